"""Fixtures for the Kubernetes executor's tests, including an in-process FAKE of the Kubernetes API.

Why a fake: no Kubernetes API server or kubelet can run on the machines these tests run on (there
are no such packages in the registries they reach, and no cluster to talk to). So ``FakeCluster``
plays the API server, the Job controller and the kubelet for exactly the calls the executor makes
(``BatchV1Api``: create/read/list/delete Jobs; ``CoreV1Api``: list/read/delete pods and follow a
container's log; ``NetworkingV1Api``: read/create a NetworkPolicy), with the official client's own
``ApiException`` for errors. Every Job it accepts is first validated against the official OpenAPI
schema of Kubernetes 1.30 (``kubernetes-validate``), as an API server would refuse a malformed one.

What it does not model: scheduling, image pulls, resource accounting, real log rotation. The tests
script what the kubelet would report (containers starting, printing, ending; a node drain).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.client import ApiException

from contestkit import structured_log
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx

K8S_VERSION = "1.30.0"


def validate(document: dict[str, Any]) -> None:
    """Raise when ``document`` is not a valid object for Kubernetes 1.30 (strict: no unknown fields)."""
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_last_ns = [0]


def _stamp_ns() -> str:
    """A kubelet log timestamp (RFC 3339 with nanoseconds), strictly increasing."""
    ns = max(time.time_ns(), _last_ns[0] + 1)
    _last_ns[0] = ns
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


class _HttpResp:
    """Enough of an HTTP response for ``ApiException`` to carry the API server's Status body."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.reason, self.headers = status, "Forbidden", {}
        self.data = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status}).encode()

    def getheaders(self) -> dict[str, str]:
        return {}


class _Response:
    """What the client returns with ``_preload_content=False``: raw JSON in ``data``."""

    def __init__(self, document: Any) -> None:
        self.data = json.dumps(document).encode()


class _LogStream:
    """A followed container log, as the kubelet serves it: each line with its RFC 3339 nanosecond
    timestamp (``timestamps=True``), from ``since_time`` (whole seconds) when given, only what the
    current log file holds (lines rotated away are gone), until the container ends. A stream that gets
    no line for ``_request_timeout``'s read part raises, as urllib3 does."""

    def __init__(self, cluster: FakeCluster, pod: str, container: str, since: str | None, read_timeout: float | None,
                 timestamps: bool) -> None:  # fmt: skip
        self.cluster, self.pod, self.container = cluster, pod, container
        self.since, self.read_timeout, self.timestamps = since, read_timeout, timestamps

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        cluster = self.cluster
        key = (self.pod, self.container)
        with cluster.cond:
            first = cluster.rotated_upto.get(key, 0)  # only the current log file is served
            sent = first
            if self.since:
                while sent < len(cluster.logs.get(key, [])) and cluster.stamps[key][sent][:19] < self.since[:19]:
                    sent += 1
            quiet_since = time.monotonic()
            while True:
                pod = cluster.pods.get(self.pod)
                lines = cluster.logs.get(key, [])
                if sent < len(lines):
                    index = sent
                    sent += 1
                    if cluster.breaks.get(key, 0) > 0 and index in cluster.break_at.get(key, set()):
                        cluster.breaks[key] -= 1
                        cluster.break_at[key].discard(index)
                        raise ConnectionResetError("the stream broke")  # what the line was lost with
                    if index in cluster.skip_once.get(key, set()):
                        cluster.skip_once[key].discard(index)  # lost in this read only
                        continue
                    if index in cluster.lost.get(key, set()):
                        continue  # lost for good (the line never reached the log file)
                    text = (cluster.stamps[key][index] + " " if self.timestamps else "") + lines[index] + "\n"
                    cluster.cond.release()
                    try:
                        yield text.encode()
                    finally:
                        cluster.cond.acquire()
                    quiet_since = time.monotonic()
                    continue
                if pod is None or cluster.terminated(self.pod, self.container):
                    return
                if key in cluster.stalled or (
                    self.read_timeout is not None and time.monotonic() - quiet_since > self.read_timeout
                ):
                    if self.read_timeout is not None and time.monotonic() - quiet_since > self.read_timeout:
                        raise TimeoutError("Read timed out.")
                cluster.cond.wait(0.05)

    def release_conn(self) -> None:
        return None


class FakeCluster:
    """The API server, Job controller and kubelet, in one process (see the module docstring)."""

    def __init__(self, namespace: str = "contest") -> None:
        self.namespace = namespace
        self.cond = threading.Condition()
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], list[str]] = {}
        self.stamps: dict[tuple[str, str], list[str]] = {}  # each line's kubelet timestamp
        self.log_bytes: dict[tuple[str, str], int] = {}  # bytes in the current log file
        self.rotated_upto: dict[tuple[str, str], int] = {}  # lines before this index were rotated away
        self.log_limit = 10 * 1024 * 1024  # the kubelet's containerLogMaxSize default
        self.breaks: dict[tuple[str, str], int] = {}
        self.break_at: dict[tuple[str, str], set[int]] = {}
        self.skip_once: dict[tuple[str, str], set[int]] = {}
        self.lost: dict[tuple[str, str], set[int]] = {}
        self.stalled: set[tuple[str, str]] = set()
        self.log_requests: list[dict[str, Any]] = []
        self.requests: dict[str, int] = {}  # API calls by method name
        self.failures: dict[str, list[Any]] = {}  # method (or "*") -> statuses/exceptions to answer first
        self.refusal: tuple[int, str] | None = None  # an admission refusal of every new Job
        self.lost_nodes: set[str] = set()  # pods on a node that vanished: deletion never completes
        self.policies: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # every Job body ever accepted
        self.deletions: list[tuple[str, str | None, int | None]] = []  # (name, propagation, grace)
        self._suffix = itertools.count(1)
        self.batch, self.core, self.networking = self, self, self

    def _call(self, method: str) -> None:
        """Count the request; answer an injected 429/5xx/timeout first when the test asked for one."""
        with self.cond:
            self.requests[method] = self.requests.get(method, 0) + 1
            queued = self.failures.get(method) or self.failures.get("*")
            if queued:
                failure = queued.pop(0)
                if isinstance(failure, int):
                    raise ApiException(status=failure, reason="Too Many Requests" if failure == 429 else "Error")
                raise failure

    # -- BatchV1Api --

    def create_namespaced_job(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> _Response:
        self._call("create_namespaced_job")
        validate(body)
        if self.refusal is not None:
            # Admission (Pod Security, a quota) refuses the object: 403 with the controller's message.
            status, message = self.refusal
            raise ApiException(status=status, reason="Forbidden", http_resp=_HttpResp(status, message))
        name = body["metadata"]["name"]
        with self.cond:
            if name in self.jobs:
                raise ApiException(status=409, reason="AlreadyExists")
            job = json.loads(json.dumps(body))
            job["metadata"].update(namespace=namespace, creationTimestamp=_now(), uid=f"uid-{name}")
            job["status"] = {}
            self.jobs[name] = job
            self.created.append(job)
            self._make_pod(name)
            self.cond.notify_all()
            return _Response(job)

    def read_namespaced_job(self, name: str, namespace: str, **kwargs: Any) -> _Response:
        self._call("read_namespaced_job")
        with self.cond:
            if name not in self.jobs:
                raise ApiException(status=404, reason="NotFound")
            return _Response(self.jobs[name])

    def list_namespaced_job(self, namespace: str, label_selector: str = "", **kwargs: Any) -> _Response:
        self._call("list_namespaced_job")
        with self.cond:
            return _Response({"items": [j for j in self.jobs.values() if _matches(j, label_selector)]})

    def delete_namespaced_job(
        self, name: str, namespace: str, propagation_policy: str | None = None, grace_period_seconds: int | None = None
    ) -> None:
        self._call("delete_namespaced_job")
        with self.cond:
            if name not in self.jobs:
                raise ApiException(status=404, reason="NotFound")
            self.deletions.append((name, propagation_policy, grace_period_seconds))
            for pod in [p for p, doc in self.pods.items() if doc["metadata"]["labels"].get("job-name") == name]:
                self._kill(pod)
                del self.pods[pod]
            del self.jobs[name]
            self.cond.notify_all()

    # -- CoreV1Api --

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kwargs: Any) -> _Response:
        self._call("list_namespaced_pod")
        with self.cond:
            return _Response({"items": [p for p in self.pods.values() if _matches(p, label_selector)]})

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> _Response:
        self._call("read_namespaced_pod")
        with self.cond:
            if name not in self.pods:
                raise ApiException(status=404, reason="NotFound")
            return _Response(self.pods[name])

    def delete_namespaced_pod(self, name: str, namespace: str, grace_period_seconds: int | None = None) -> None:
        """``kubectl delete pod``: the pod gets a deletionTimestamp; its kubelet stops it and the object goes.

        As in a real cluster, a deleted pod has no DisruptionTarget condition, so the Job's
        podFailurePolicy sees its containers' exit 137 and fails the Job (FailJob). On a node that
        vanished nobody confirms the end: the pod stays Terminating, its containers still "running".
        """
        self._call("delete_namespaced_pod")
        with self.cond:
            if name not in self.pods:
                raise ApiException(status=404, reason="NotFound")
            doc = self.pods[name]
            doc["metadata"]["deletionTimestamp"] = _now()
            doc["metadata"]["deletionGracePeriodSeconds"] = 30 if grace_period_seconds is None else grace_period_seconds
            if name not in self.lost_nodes:
                self._kill(name)
                job = doc["metadata"]["labels"].get("job-name")
                if job in self.jobs:
                    self.jobs[job]["status"]["conditions"] = [
                        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}
                    ]
                del self.pods[name]
            self.cond.notify_all()

    def lose_node(self, pod: str) -> None:
        """The pod's node vanishes without its Node object being deleted: the pod is evicted but never ends."""
        with self.cond:
            self.lost_nodes.add(pod)
        self.delete_namespaced_pod(pod, self.namespace)

    def waiting(self, pod: str, container: str, reason: str, message: str = "") -> None:
        """The kubelet reports a container that cannot start (ImagePullBackOff, CreateContainerConfigError)."""
        with self.cond:
            doc = self.pods[pod]
            if not doc["status"].get("containerStatuses"):
                doc["status"]["containerStatuses"] = [
                    {"name": c["name"], "state": {"waiting": {"reason": "ContainerCreating"}}}
                    for c in doc["spec"]["containers"]
                ]
            for status in doc["status"]["containerStatuses"]:
                if status["name"] == container:
                    status["state"] = {"waiting": {"reason": reason, "message": message}}
            self.cond.notify_all()

    def unschedulable(self, pod: str, message: str) -> None:
        """The scheduler finds no node: PodScheduled is False with reason Unschedulable."""
        with self.cond:
            self.pods[pod]["status"]["conditions"].append(
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            )
            self.cond.notify_all()

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, **kwargs: Any) -> _LogStream:
        self._call("read_namespaced_pod_log")
        timeout = kwargs.get("_request_timeout")
        with self.cond:
            self.log_requests.append({"pod": name, "container": container, **kwargs})
            pod = self.pods.get(name)
            if pod is None:
                raise ApiException(status=404, reason="NotFound")
            states = {c["name"]: c["state"] for c in pod["status"].get("containerStatuses") or []}
            if not states or "waiting" in states.get(container, {"waiting": {}}):
                raise ApiException(status=400, reason=f'container "{container}" is waiting to start')
        read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        return _LogStream(self, name, container, kwargs.get("since_time"), read_timeout, bool(kwargs.get("timestamps")))

    # -- NetworkingV1Api --

    def read_namespaced_network_policy(self, name: str, namespace: str, **kwargs: Any) -> _Response:
        if name not in self.policies:
            raise ApiException(status=404, reason="NotFound")
        return _Response(self.policies[name])

    def create_namespaced_network_policy(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> _Response:
        validate(body)
        self.policies[body["metadata"]["name"]] = body
        return _Response(body)

    # -- the Job controller and the kubelet, as the tests script them --

    def _make_pod(self, job: str) -> str:
        template = self.jobs[job]["spec"]["template"]
        name = f"{job}-{next(self._suffix):05d}"
        labels = {**template["metadata"]["labels"], "job-name": job}
        self.pods[name] = {
            "metadata": {"name": name, "labels": labels, "creationTimestamp": f"{_now()}-{name}"},
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": []},
        }
        return name

    def terminated(self, pod: str, container: str) -> bool:
        doc = self.pods.get(pod)
        if doc is None:
            return True
        for status in doc["status"].get("containerStatuses") or []:
            if status["name"] == container:
                return "terminated" in status["state"]
        return False

    def _kill(self, pod: str, code: int = 137) -> None:
        for status in self.pods[pod]["status"].get("containerStatuses") or []:
            if "terminated" not in status["state"]:
                status["state"] = {"terminated": {"exitCode": code}}

    def pod_of(self, job: str, timeout: float = 10.0, exclude: set[str] | None = None) -> str:
        """The (newest) pod of a Job, waiting for it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                names = [
                    p
                    for p, doc in self.pods.items()
                    if doc["metadata"]["labels"].get("job-name") == job and p not in (exclude or set())
                ]
                if names:
                    return sorted(names)[-1]
                if time.monotonic() > deadline:
                    raise AssertionError(f"no pod for Job {job}")
                self.cond.wait(0.1)

    def wait_job(self, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.jobs:
                if time.monotonic() > deadline:
                    raise AssertionError("no Job was created")
                self.cond.wait(0.1)
            return sorted(self.jobs)[-1]

    def start(self, pod: str) -> None:
        with self.cond:
            doc = self.pods[pod]
            doc["status"].update(phase="Running", startTime=_now())
            doc["status"]["containerStatuses"] = [
                {"name": c["name"], "state": {"running": {"startedAt": _now()}}} for c in doc["spec"]["containers"]
            ]
            self.cond.notify_all()

    def print(self, pod: str, container: str, *lines: str) -> None:
        """The container writes lines; the kubelet stamps them and rotates its log file at ``log_limit``."""
        key = (pod, container)
        with self.cond:
            for line in lines:
                text = line.rstrip("\n")
                size = len(text) + 1 + 36  # the CRI log line's own prefix
                if self.log_bytes.get(key, 0) + size > self.log_limit:
                    self.rotated_upto[key] = len(self.logs.get(key, []))  # a new file: the old is not served
                    self.log_bytes[key] = 0
                self.log_bytes[key] = self.log_bytes.get(key, 0) + size
                self.logs.setdefault(key, []).append(text)
                self.stamps.setdefault(key, []).append(_stamp_ns())
            self.cond.notify_all()

    def end(self, pod: str, container: str, code: int) -> None:
        with self.cond:
            for status in self.pods[pod]["status"]["containerStatuses"]:
                if status["name"] == container:
                    status["state"] = {"terminated": {"exitCode": code}}
            if all("terminated" in s["state"] for s in self.pods[pod]["status"]["containerStatuses"]):
                self.pods[pod]["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
            self.cond.notify_all()

    def deadline_exceeded(self, pod: str) -> None:
        with self.cond:
            self.pods[pod]["status"].update(phase="Failed", reason="DeadlineExceeded")
            self.cond.notify_all()

    def disrupt(self, pod: str) -> str:
        """A node drain: the pod gets DisruptionTarget and is killed; the Job controller makes a new one
        (the podFailurePolicy's Ignore rule)."""
        with self.cond:
            doc = self.pods[pod]
            doc["status"]["conditions"].append(
                {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
            )
            self._kill(pod, 143)
            doc["status"]["phase"] = "Failed"
            job = doc["metadata"]["labels"]["job-name"]
            rules = self.jobs[job]["spec"]["podFailurePolicy"]["rules"]
            assert rules[0]["action"] == "Ignore" and rules[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
            new = self._make_pod(job)
            self.cond.notify_all()
            return new


def _matches(document: dict[str, Any], label_selector: str) -> bool:
    labels = document["metadata"].get("labels") or {}
    for term in filter(None, label_selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


# -- what the env container prints, made by the real structured_log code -------------------------------


def env_output(
    tmp: Path, *, end_reason: str, rewards: list[float], timesteps: int, error: str | None = None
) -> tuple[list[str], Path]:
    """The env container's log for a level that ended with ``end_reason``: its own lines, then the records.

    The results files are written to a scratch directory and mirrored by ``structured_log.Mirror``,
    exactly as ``python -m contestkit.structured_log`` does in the pod.
    """
    from contestkit import results

    scratch = tmp / f"pod-results-{time.monotonic_ns()}"
    scratch.mkdir()
    rows = ["r,l,t"] + [f"{r},{100 + i},{1.5 * (i + 1):.3f}" for i, r in enumerate(rewards)]
    (scratch / results.MONITOR).write_text("\n".join(rows) + "\n")
    (scratch / results.LOG).write_text("t,timesteps,episodes\n1.0,10,0\n")
    results.write_json(
        scratch / results.PROGRESS, {"timesteps": timesteps, "timestep_limit": 1000, "episodes": len(rewards)}
    )
    results.write_json(
        scratch / results.ENV_STATUS,
        {
            "end_reason": end_reason,
            "error": error,
            "timesteps": timesteps,
            "episodes": len(rewards),
            "wall_seconds": 3.0,
        },
    )
    lines: list[str] = ["serving Airstriker-Genesis Level1 at /root/compo/tmp/sock", f"session ended: {end_reason}"]
    structured_log.Mirror(scratch, write=lambda line: lines.append(line.rstrip("\n"))).finish()
    return lines, scratch


def progress_line(timesteps: int, limit: int = 1000, episodes: int = 0) -> str:
    return structured_log.emit(
        structured_log.RecordKind.PROGRESS,
        {"timesteps": timesteps, "timestep_limit": limit, "episodes": episodes, "timesteps_per_second": 500.0},
    ).rstrip("\n")


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def settings() -> kx.KubernetesSettings:
    return kx.KubernetesSettings.from_mapping(
        {
            "remote_env_image": "registry.example.org:5000/contestkit/remote-env:0.1.0",
            "namespace": "contest",
            "image_pull_secrets": ["contest-registry"],
            "poll_seconds": 0.05,
        }
    )


@pytest.fixture
def executor(cluster: FakeCluster, settings: kx.KubernetesSettings) -> kx.KubernetesExecutor:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    return kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)


@pytest.fixture
def make_task(tmp_path: Path):  # type: ignore[no-untyped-def]
    from contestkit.levelrun import LevelRunSpec
    from contestkit.server.executors import LevelTask

    def make(job_id: int = 7, index: int = 0, attempt: int = 1, wallclock: float = 60.0, **run: Any) -> Any:
        results_dir = tmp_path / "jobs" / str(job_id) / f"attempt-{attempt}" / f"{index:02d}-Airstriker-Genesis-Level1"
        results_dir.mkdir(parents=True, exist_ok=True)
        spec = LevelRunSpec(
            game="Airstriker-Genesis",
            state="Level1",
            image="registry.example.org:5000/team-rocket/agent@sha256:" + "a" * 64,
            timestep_limit=1000,
            wallclock_limit=wallclock,
            seed=index,
        ).replace(**run)
        return LevelTask(
            job_id=job_id,
            index=index,
            attempt=attempt,
            team="team-rocket",
            run=spec,
            results_dir=results_dir,
        )

    return make


@pytest.fixture
def docker_cluster():  # type: ignore[no-untyped-def]
    """``docker_cluster(api, binds, images)``: a DockerCluster, its containers removed at the end."""
    made: list[DockerCluster] = []

    def make(api: Any, binds: dict[str, dict[str, str]], images: dict[str, str]) -> DockerCluster:
        made.append(DockerCluster(api, binds, images))
        return made[-1]

    yield make
    for cluster in made:
        cluster.close()


@pytest.fixture
def env_lines(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``env_lines(end_reason=..., rewards=[...], timesteps=N)``: the env container's log and its scratch results."""
    return lambda **kwargs: env_output(tmp_path, **kwargs)


@pytest.fixture
def progress():  # type: ignore[no-untyped-def]
    return progress_line


@pytest.fixture
def validate_k8s():  # type: ignore[no-untyped-def]
    return validate


# -- a kubelet made of the real Docker engine --------------------------------------------------------


class _DockerLog:
    def __init__(self, api: Any, container: str) -> None:
        self.api, self.container = api, container

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        # Kubernetes serves stdout and stderr as one stream: so does this.
        yield from self.api.logs(self.container, stream=True, follow=True, stdout=True, stderr=True)

    def release_conn(self) -> None:
        return None


class DockerCluster(FakeCluster):
    """The FAKE API server of ``FakeCluster``, with each pod run for real as Docker containers.

    Still a fake of the API (no API server can run here), but the pod's containers are real: the
    Job's images, command, arguments, environment, volumes (``emptyDir`` as Docker volumes, the
    in-memory one as tmpfs), resource limits and security settings (all capabilities dropped, no
    privilege escalation) become ``docker create`` settings; the containers share no network at all,
    as the NetworkPolicy makes it; their logs are read through the engine as one stream per
    container, as the kubelet serves them. ``binds`` adds read-only files per container name (the
    agent script, say); ``images`` maps a digest-pinned reference to the local image it stands for (an
    image never pushed has no registry digest).
    """

    def __init__(
        self, api: Any, binds: dict[str, dict[str, str]], images: dict[str, str], namespace: str = "contest"
    ) -> None:
        super().__init__(namespace)
        self.api = api
        self.binds = binds
        self.images = images
        self.containers: dict[str, dict[str, str]] = {}  # pod -> container name -> id
        self.volumes: dict[str, list[str]] = {}

    def _make_pod(self, job: str) -> str:
        import os

        name = super()._make_pod(job)
        spec = self.pods[name]["spec"]
        volumes = {}
        for volume in spec["volumes"]:
            empty = volume["emptyDir"]
            options = {}
            if empty.get("medium") == "Memory":
                size = empty["sizeLimit"].replace("Mi", "m").replace("Gi", "g")
                options = {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": f"size={size}"}}
            volumes[volume["name"]] = self.api.create_volume(
                name=f"ck-test-{name}-{volume['name']}", labels={"contestkit-test": name}, **options
            )["Name"]
        self.volumes[name] = list(volumes.values())
        ids = {}
        for container in spec["containers"]:
            binds = {volumes[m["name"]]: {"bind": m["mountPath"], "mode": "rw"} for m in container["volumeMounts"]}
            extra = self.binds.get(container["name"], {})
            binds.update({host: {"bind": path, "mode": "ro"} for path, host in extra.items()})
            limits = container["resources"]["limits"]
            security = container["securityContext"]
            host_config = self.api.create_host_config(
                binds=binds,
                network_mode="none",
                cap_drop=["ALL"] if "ALL" in security["capabilities"]["drop"] else None,
                security_opt=["no-new-privileges"] if security["allowPrivilegeEscalation"] is False else None,
                nano_cpus=int(min(int(limits["cpu"].rstrip("m")) / 1000, os.cpu_count() or 1) * 1e9),
                mem_limit=limits["memory"].replace("Gi", "g").replace("Mi", "m"),
            )
            ids[container["name"]] = self.api.create_container(
                self.images.get(container["image"], container["image"]),
                entrypoint=container.get("command"),
                command=container.get("args"),
                environment={e["name"]: e["value"] for e in container.get("env", [])},
                user=str(security["runAsUser"]) if "runAsUser" in security else None,
                labels={"contestkit-test": name},
                name=f"ck-test-{name}-{container['name']}",
                host_config=host_config,
            )["Id"]
        self.containers[name] = ids
        for cid in ids.values():
            self.api.start(cid)
        self.pods[name]["status"].update(phase="Running", startTime=_now())
        return name

    def _refresh(self, pod: str) -> None:
        statuses = []
        for cname, cid in self.containers.get(pod, {}).items():
            state = self.api.inspect_container(cid)["State"]
            if state["Status"] == "exited":
                statuses.append({"name": cname, "state": {"terminated": {"exitCode": state["ExitCode"]}}})
            else:
                statuses.append({"name": cname, "state": {"running": {"startedAt": state["StartedAt"]}}})
        self.pods[pod]["status"]["containerStatuses"] = statuses

    def read_namespaced_pod(self, name: str, namespace: str, **kwargs: Any) -> _Response:
        with self.cond:
            if name in self.pods:
                self._refresh(name)
        return super().read_namespaced_pod(name, namespace, **kwargs)

    def list_namespaced_pod(self, namespace: str, label_selector: str = "", **kwargs: Any) -> _Response:
        with self.cond:
            for name in self.pods:
                self._refresh(name)
        return super().list_namespaced_pod(namespace, label_selector, **kwargs)

    def read_namespaced_pod_log(self, name: str, namespace: str, container: str, **kwargs: Any) -> Any:
        with self.cond:
            if name not in self.pods:
                raise ApiException(status=404, reason="NotFound")
            return _DockerLog(self.api, self.containers[name][container])

    def _kill(self, pod: str, code: int = 137) -> None:
        for cid in self.containers.pop(pod, {}).values():
            self.api.remove_container(cid, force=True)
        for volume in self.volumes.pop(pod, []):
            self.api.remove_volume(volume, force=True)

    def close(self) -> None:
        with self.cond:
            for pod in list(self.containers):
                self._kill(pod)


@pytest.fixture
def make_executor(cluster: FakeCluster):  # type: ignore[no-untyped-def]
    """``make_executor(**settings)``: an executor against the FAKE cluster, with server.yaml settings changed."""

    def make(**changes: Any) -> kx.KubernetesExecutor:
        settings = kx.KubernetesSettings.from_mapping(
            {
                "remote_env_image": "registry.example.org:5000/contestkit/remote-env:0.1.0",
                "namespace": "contest",
                "poll_seconds": 0.05,
                **changes,
            }
        )
        api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace, read_timeout=0.5)
        return kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)

    return make
