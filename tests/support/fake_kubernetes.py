"""An in-process FAKE of the Kubernetes API, for the Kubernetes runtime's tests and ``bench/k8s_api_load.py``.

Why a fake: no Kubernetes API server or kubelet can run on the machines these tests run on (there
are no such packages in the registries they reach, and no cluster to talk to). So ``FakeCluster``
plays the API server, the Job controller and the kubelet for exactly the calls the executor makes,
with the official client's own ``ApiException`` for errors, and is as strict as a real cluster on
what the tests rely on: every Job and NetworkPolicy is validated against the official OpenAPI schema
of Kubernetes 1.30 (``kubernetes-validate``) as an API server would refuse a malformed one; log lines
carry RFC 3339 nanosecond timestamps, ``sinceTime`` takes whole seconds, and only the current log
file (rotated at ``log_limit``, the kubelet's 10 MiB default) is served; a deleted pod gets a
``deletionTimestamp`` and, having no DisruptionTarget condition, fails its Job through the
podFailurePolicy; a pod on a lost node stays Terminating; pods wait with the kubelet's reasons
(ImagePullBackOff, CreateContainerConfigError) or PodScheduled=False; admission refuses with a 403
Status; any call can be made to answer 429/5xx or time out first; every call is counted.

What it does not model: scheduling decisions, real image pulls, resource accounting. CNI enforcement
is a switch, not a network: ``enforces_network_policy`` says whether the fake's "CNI" enforces
NetworkPolicy, and a bare pod (the executor's NetworkPolicy probe) ends at once with the probe's
"blocked" exit status when the switch is on and a stored deny-all policy selects it, else "reached".
The tests script what the kubelet would report (containers starting, printing, ending; a node drain).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
from kubernetes.client import ApiException

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
        self.enforces_network_policy = True  # the fake "CNI": whether NetworkPolicy stops a probe pod
        self.bare_pods_start = True  # False: bare pods stay Pending (a probe that cannot decide)
        self.bare_pods: list[dict[str, Any]] = []  # every bare pod body accepted
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

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> _Response:
        """A bare pod. Its one container runs the NetworkPolicy probe: exit 21 (blocked) when the "CNI"
        enforces policy and a stored policy denying egress selects the pod's labels, else 20 (reached)."""
        from contestkit.server.executors.network_policy import BLOCKED_EXIT, REACHED_EXIT

        self._call("create_namespaced_pod")
        validate(body)
        name = body["metadata"]["name"]
        with self.cond:
            if name in self.pods:
                raise ApiException(status=409, reason="AlreadyExists")
            pod = json.loads(json.dumps(body))
            pod["metadata"].update(namespace=namespace, creationTimestamp=_now())
            pod["status"] = {"phase": "Pending", "conditions": []}
            self.pods[name] = pod
            self.bare_pods.append(pod)
            if self.bare_pods_start:
                labels = pod["metadata"].get("labels") or {}
                denied = any(
                    "Egress" in p["spec"].get("policyTypes", []) and not p["spec"].get("egress")
                    and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
                    for p in self.policies.values()
                )  # fmt: skip
                code = BLOCKED_EXIT if self.enforces_network_policy and denied else REACHED_EXIT
                pod["status"].update(phase="Failed", startTime=_now())
                pod["status"]["containerStatuses"] = [
                    {"name": c["name"], "state": {"terminated": {"exitCode": code}}} for c in pod["spec"]["containers"]
                ]
            self.cond.notify_all()
            return _Response(pod)

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
        self._call("read_namespaced_network_policy")
        if name not in self.policies:
            raise ApiException(status=404, reason="NotFound")
        return _Response(self.policies[name])

    def create_namespaced_network_policy(self, namespace: str, body: dict[str, Any], **kwargs: Any) -> _Response:
        self._call("create_namespaced_network_policy")
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
