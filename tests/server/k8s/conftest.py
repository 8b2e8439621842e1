"""Fixtures for the Kubernetes runtime's tests.

The in-process FAKE of the Kubernetes API (no API server can run here) is
tests/support/fake_kubernetes.py; ``DockerCluster`` below is that fake with each pod's containers run
for real on the Docker engine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from contestkit.runs import structured_log
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx
from contestkit.server.executors.kubernetes_settings import KubernetesSettings
from tests.support.fake_kubernetes import K8S_VERSION, FakeCluster, _LogStream, _now, _Response, validate  # noqa: F401


def env_output(
    tmp: Path,
    *,
    end_reason: str,
    rewards: list[float],
    timesteps: int,
    error: str | None = None,
    bk2: Path | None = None,
) -> tuple[list[str], Path]:
    """The env container's log for a level that ended with ``end_reason``: its own lines, then the records.

    The results files are written to a scratch directory and mirrored by ``structured_log.Mirror``,
    exactly as ``python -m contestkit.runs.structured_log`` does in the pod.
    """
    from contestkit.runs import results

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
    if bk2 is not None:  # a real recording (record: true), carried back like every results file
        shutil.copytree(bk2, scratch / "bk2")
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
def settings() -> KubernetesSettings:
    return KubernetesSettings.from_mapping(
        {
            "remote_env_image": "registry.example.org:5000/contestkit/remote-env:0.1.0",
            "namespace": "contest",
            "image_pull_secrets": ["contest-registry"],
            "poll_seconds": 0.05,
        }
    )


@pytest.fixture
def executor(cluster: FakeCluster, settings: KubernetesSettings) -> kx.KubernetesExecutor:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    return kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)


@pytest.fixture
def make_task(tmp_path: Path):  # type: ignore[no-untyped-def]
    from contestkit.runs.levelrun import LevelRunSpec
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
def running_level(cluster: FakeCluster, executor: kx.KubernetesExecutor):  # type: ignore[no-untyped-def]
    """``running_level(task, timesteps=N)``: the executor started ``task``; its Job's pod runs and,
    with ``timesteps``, has reported that much progress. Returns (run, job, pod, follow)."""
    from tests.support.k8s import Follow

    def start(task: Any, timesteps: int | None = None) -> tuple[Any, str, str, Follow]:
        run = executor.start(task)
        job = cluster.wait_job()
        pod = cluster.pod_of(job)
        follow = Follow(run)
        cluster.start(pod)
        if timesteps is not None:
            cluster.print(pod, kr.ENV_CONTAINER, progress_line(timesteps))
            follow.wait_progress(timesteps)
        return run, job, pod, follow

    return start


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
        self.users: dict[str, str | None] = {}  # container name -> the user it ran as

    def _make_pod(self, job: str) -> str:
        import os

        name = super()._make_pod(job)
        spec = self.pods[name]["spec"]
        volumes = {}
        for volume in spec["volumes"]:
            empty = volume["emptyDir"]
            # An emptyDir is world-writable (0777), so a container of any user can use it: tmpfs with
            # mode 1777 is the same here (the on-disk ones too: a level-run in a test writes little).
            size = empty["sizeLimit"].replace("Mi", "m").replace("Gi", "g")
            options = {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": f"size={size},mode=1777"}}
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
                user=self.user_of(container),
                labels={"contestkit-test": name},
                name=f"ck-test-{name}-{container['name']}",
                host_config=host_config,
            )["Id"]
        self.containers[name] = ids
        for cid in ids.values():
            self.api.start(cid)
        self.pods[name]["status"].update(phase="Running", startTime=_now())
        return name

    def user_of(self, container: dict[str, Any]) -> str | None:
        """The Docker ``user`` for a container's securityContext (runAsUser:runAsGroup), recorded by name."""
        security = container["securityContext"]
        user = None
        if "runAsUser" in security:
            user = f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"
        self.users[container["name"]] = user
        return user

    def _refresh(self, pod: str) -> None:
        if pod not in self.containers:
            return  # a bare pod (the NetworkPolicy probe) keeps the fake's own status: nothing runs on Docker
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
        settings = KubernetesSettings.from_mapping(
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
