"""The Kubernetes executor: each level-run is one ``batch/v1`` Job in a namespace of an existing cluster.

Why: one machine holds a handful of 12-hour, 6-core level-runs; the 2018 contest needed about 90 at
once on average and over a thousand at the deadline. How a pod runs a level-run (the Job, the API
calls, the pod as a session, the results through its log) is the Kubernetes *runtime*
(:mod:`contestkit.runtime.kubernetes`), and its lifecycle is :func:`contestkit.runs.evaluation.run_session`,
as for the local and Docker runtimes. This module is what only a server needs: server.yaml's
``kubernetes:`` settings, the scheduler's handles (start, adopt after a restart, reconcile, release),
and pinning a tag to its registry digest (the cluster pulls the image itself).

A server restart does not stop the Jobs: ``release`` leaves them running, and ``adopt`` follows them
again by name; a level's Job is deleted only once the scheduler has recorded its end (``recorded``),
so a restart in between adopts a finished Job instead of running the level twice.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contestkit.containers import imageref
from contestkit.errors import ContestkitError
from contestkit.runtime.kubernetes import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_LEVEL,
    ClusterApi,
    ClusterRetry,
    KubernetesLauncher,
    LevelIdentity,
    PodCache,
    connect,
    contest_selector,
)
from contestkit.server.events import JobEvent, emit
from contestkit.server.executors import (
    Executor,
    LevelRun,
    LevelTask,
    RunningLevel,
    network_policy,
    render_videos,
)
from contestkit.server.executors.kubernetes_settings import KubernetesSettings

log = logging.getLogger("contestkit.server.executors.kubernetes")


def identity_of(task: LevelTask) -> LevelIdentity:
    """The identity of a scheduler's task: its job, attempt, level and team."""
    return LevelIdentity(task.job_id, task.attempt, task.index, task.team)


@dataclass(frozen=True)
class ClusterLevel(RunningLevel):
    """A level-run the cluster runs (the scheduler's ``RunningLevel``, plus the attempt and the Job)."""

    attempt: int = 0
    name: str = ""


class KubernetesRun(LevelRun):
    """One level-run's Job, followed by the shared lifecycle (re-runs after disruptions included)."""

    def __init__(self, executor: KubernetesExecutor, task: LevelTask) -> None:
        super().__init__(task)
        self.executor = executor
        self.launcher = KubernetesLauncher(
            executor.api,
            executor.settings,
            identity_of(task),
            task.run,
            pods=executor.pods,
            grace_seconds=executor.grace_seconds,
            cancel=self._cancelled,
            on_retry=self._retrying,
        )
        self.name = self.launcher.job
        self.session: Any = None

    @property
    def disruptions(self) -> int:
        return self.launcher.disruptions

    def _retrying(self, retry: ClusterRetry) -> None:  # the host's event line: the wait is the cluster's
        task = self.task  # the event's fields name the level as every other level.* line does
        emit(JobEvent.LEVEL_RETRYING, job=task.job_id, level=task.index, team=task.team, kubernetes_job=retry.job,
             reason=retry.reason, retry=f"{retry.attempt}/{retry.retries}", delay_s=retry.delay)  # fmt: skip

    def budget_started(self) -> float | None:
        """The current pod's budget start (monotonic), None while it waits: the watchdog counts from it."""
        session = self.session
        return session.budget_start() if session is not None else None

    def detach(self) -> None:
        """Let go without stopping anything: the server is stopping, and adopts the Job at its next start."""
        self.launcher.detached.set()
        self._cancelled.set()

    def follow(self, on_progress: Any) -> Any:
        from contestkit.runs.evaluation import run_level  # deferred: the emulator loads late

        rd = self.task.results_dir
        rd.mkdir(parents=True, exist_ok=True)
        try:
            result = run_level(
                self.launcher,
                self.task.run,
                rd,
                on_progress=on_progress,
                cancel=self._cancelled,
                keep=lambda: not self.launcher.detached.is_set(),
                on_session=lambda session: setattr(self, "session", session),
            )
        finally:
            self.executor.forget(self)
            if self.cancelled and not self.launcher.detached.is_set():
                self.launcher.delete(3)  # cancelled before a pod came, or while one ran: nothing may stay behind
        render_videos(self.task.run, rd, self.cancelled or self.launcher.detached.is_set())
        if self.launcher.detached.is_set():
            raise ContestkitError(
                f"The server is stopping; the Kubernetes Job {self.name} keeps running and is adopted "
                "at its next start."
            )
        return result

    def recorded(self) -> None:
        """The scheduler has recorded the level's end: only now may its Job (and its log) go."""
        if not self.launcher.detached.is_set():
            self.launcher.delete()


class KubernetesExecutor(Executor):
    """Level-runs as Kubernetes Jobs (server.yaml ``executor: kubernetes``)."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        *,
        api: ClusterApi | None = None,
        grace_seconds: float = 120.0,
        registry: tuple[str, tuple[str, str] | None] | None = None,
        status_file: Path | None = None,
    ) -> None:
        """``registry``: the contest registry's scheme and the evaluator's account, to resolve tags to digests;
        ``status_file``: where the NetworkPolicy check's outcome is kept for ``contestkit server status``."""
        self.settings = settings
        self.registry = registry
        self.api = api or connect(settings)
        self.pods = PodCache(self.api, settings)  # one list call per poll for every level-run
        self.grace_seconds = grace_seconds
        self._runs: dict[str, KubernetesRun] = {}
        self._lock = threading.Lock()
        network_policy.ensure_policy(self.api, settings)
        self.network = network_policy.NetworkPolicyGate(self.api, settings, status_file)
        self.network.start()

    def held(self) -> str | None:
        return self.network.held()

    def notices(self) -> list[str]:
        return [notice for notice in (self.network.held(), self.network.warning()) if notice]

    def resolve_image(self, reference: str) -> str:
        """The image pinned by digest: as submitted, or resolved in the contest registry (no pull here).

        The cluster pulls the image itself, so the server only asks the registry which manifest the
        tag names now; every level (and a re-run after a disruption or a restart) then runs that one.
        """
        ref = imageref.parse(reference)
        if ref.digest is not None or self.registry is None:
            return reference
        return str(ref.pinned(resolve_digest(reference, *self.registry)))

    def _run(self, task: LevelTask) -> KubernetesRun:
        from contestkit.runs.evaluation import refuse_unhonoured

        run = KubernetesRun(self, task)
        refuse_unhonoured(run.launcher, task.run)
        run.launcher.check(task.run)
        with self._lock:
            self._runs[run.name] = run
        return run

    def start(self, task: LevelTask) -> KubernetesRun:
        run = self._run(task)
        existing = self.api.read_job(run.name)
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            self._wait_gone(run.name)
        run.launcher.create()
        return run

    def adopt(self, task: LevelTask) -> KubernetesRun | None:
        """The Job of ``task`` if it still exists (running, or finished while the server was down)."""
        name = identity_of(task).job_name(self.settings)
        job = self.api.read_job(name)
        if job is None or (job.get("metadata") or {}).get("deletionTimestamp"):
            return None
        log.warning("adopting the running Kubernetes Job %s", name)
        return self._run(task)

    def running(self) -> list[RunningLevel]:
        levels = []
        for job in self.api.list_jobs(contest_selector(self.settings)):
            metadata = job.get("metadata") or {}
            labels = metadata.get("labels") or {}
            if metadata.get("deletionTimestamp"):
                continue
            try:
                levels.append(
                    ClusterLevel(
                        job_id=int(labels[LABEL_JOB]),
                        index=int(labels[LABEL_LEVEL]),
                        attempt=int(labels[LABEL_ATTEMPT]),
                        name=metadata["name"],
                    )
                )
            except (KeyError, ValueError):
                continue
        return levels

    def discard(self, level: RunningLevel) -> None:
        name = getattr(level, "name", None) or LevelIdentity(level.job_id, 1, level.index).job_name(self.settings)
        log.warning("deleting the Kubernetes Job %s: its job is not running here", name)
        self.api.delete_job(name)

    def release(self) -> None:
        """The server is stopping: let go of every run without stopping its Job (adopted at the next start)."""
        with self._lock:
            runs = list(self._runs.values())
        self.network.stop()
        for run in runs:
            run.detach()

    def forget(self, run: KubernetesRun) -> None:
        with self._lock:
            if self._runs.get(run.name) is run:
                del self._runs[run.name]

    def _wait_gone(self, name: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.api.read_job(name) is not None:
            if time.monotonic() > deadline:
                raise ContestkitError(f"The Kubernetes Job {name} is still being deleted after {timeout:g} s.")
            time.sleep(self.settings.poll_seconds)


def executor_from_config(config: Any, *, api: ClusterApi | None = None) -> KubernetesExecutor:
    """The executor server.yaml configures with ``executor: kubernetes`` and its ``kubernetes:`` mapping."""
    settings = KubernetesSettings.from_mapping(getattr(config, "kubernetes", None) or {})
    password = getattr(config, "evaluator_registry_password", "")
    account = (config.evaluator_username, password) if password else None
    return KubernetesExecutor(
        settings,
        api=api,
        grace_seconds=config.budget_grace_seconds,
        registry=(config.registry_scheme, account),
        status_file=Path(config.data_dir) / network_policy.STATUS_FILE if hasattr(config, "data_dir") else None,
    )


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def resolve_digest(reference: str, scheme: str, account: tuple[str, str] | None, timeout: float = 30.0) -> str:
    """The ``sha256:`` digest a tag names in a registry (a HEAD on its manifest, as ``docker pull`` asks)."""
    import requests

    ref = imageref.parse(reference)
    host, repository, tag = ref.registry, ref.repository, ref.tag
    if host is None or tag is None:
        raise ContestkitError(f"The image {reference} has no registry tag to resolve.")
    url = f"{scheme}://{host}/v2/{repository}/manifests/{tag}"
    try:
        response = requests.head(url, headers={"Accept": MANIFEST_TYPES}, auth=account, timeout=timeout)
    except requests.RequestException as exc:
        raise ContestkitError(f"The contest registry at {host} did not answer ({exc}); is it running?") from None
    if response.status_code == 404:
        raise ContestkitError(f"The image {reference} is not in the registry; push it first (`contestkit push`).")
    digest = response.headers.get("Docker-Content-Digest", "")
    if response.status_code != 200 or not digest.startswith("sha256:"):
        raise ContestkitError(
            f"The registry answered {response.status_code} for {reference} without a digest; "
            "check the evaluator's registry account in server.yaml."
        )
    return digest


__all__ = ["ClusterLevel", "KubernetesExecutor", "KubernetesRun", "KubernetesSettings", "executor_from_config"]
