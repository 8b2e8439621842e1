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
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contestkit import yamlconfig
from contestkit.containers import imageref
from contestkit.errors import ContestkitError, UsageError
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
    quantity,
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

log = logging.getLogger("contestkit.server.executors.kubernetes")


# -- settings (server.yaml's ``kubernetes:`` mapping) -----------------------------------------------


@dataclass(frozen=True)
class KubernetesSettings:
    """How level-runs become Jobs; server.yaml's ``kubernetes:`` mapping, unknown keys refused.

    CPU and memory default to the level-run spec's (the contest machine: 6 cores, 56 GB) for the whole
    pod: the two halves shared that machine in 2018, so the agent may use all 6 cores (its limit) while
    the pod requests 6 in all, the env's share (``env_cpu``) taken from the agent's request.
    """

    remote_env_image: str  # pushed where the cluster pulls from, e.g. REGISTRY/contestkit/remote-env:VERSION
    namespace: str = "contestkit"
    kubeconfig: str | None = None  # None: the in-cluster service account, else ~/.kube/config
    context: str | None = None
    contest: str = "contestkit"  # a label value: two contests may share a namespace without touching each other
    job_prefix: str = "ck"
    image_pull_secrets: list[str] = field(default_factory=list)
    cpus: float | None = None  # the agent's CPU limit and the pod's CPU request; None: the spec's (6, the contest's)
    memory: str | None = None  # the agent's memory (request = limit); None: the spec's (56 GB, the contest's)
    gpus: int = 0  # nvidia.com/gpu for the agent; a level-run spec asking for GPUs gets at least 1
    env_cpu: float = 1.0  # the env container's CPU request (taken from the agent's request)
    env_memory: str = "4Gi"  # the env container's memory (request = limit)
    results_size: str = "1Gi"  # the env's results directory in the pod (monitor.csv, recordings)
    agent_out_size: str = "1Gi"  # the agent's out/ directory
    agent_run_as_user: int | None = None  # None: the image's user (the contest's agent images are root)
    env_run_as_user: int | None = 1000  # our own image: not root (its files are readable by any user)
    agent_ephemeral_storage: str = "20Gi"  # the agent's writable layer and log; past it the kubelet evicts
    env_ephemeral_storage: str = "4Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class: str | None = None
    ttl_seconds_after_finished: int = 86_400  # a finished Job (and its log) stays a day for a server that was down
    disruption_retries: int = 2  # re-runs after disruptions, bounded by the Job's deadline
    manage_network_policy: bool = True  # create the deny-all NetworkPolicy at start when it is missing
    allow_unenforced_network_policy: bool = False  # run level-runs although the probe finds no enforcement
    network_probe_target: str | None = None  # HOST:PORT the probe pod tries; None: the API server's Service
    poll_seconds: float = 2.0  # how often the level-run pods are listed (one call for all of them)
    start_allowance_seconds: int = 600  # scheduling and image pulls, added to the pod's deadline
    start_timeout_seconds: float = 300.0  # a pod the cluster says cannot start ends after this long
    cluster_start_retries: int = 3  # new Jobs for a pod the cluster (not the team's image) could not start
    cluster_retry_seconds: float = 60.0  # the first wait before one; it doubles, at most 10 minutes
    terminating_grace_seconds: float = 300.0  # a pod stuck Terminating (a lost node) counts as gone after this
    log_read_timeout_seconds: float = 120.0  # a log stream silent this long is read again from where it was
    log_rereads: int = 5  # reads of a log in a row without progress before the level fails (infrastructure)

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any] | yamlconfig.Section, where: str = "server.yaml 'kubernetes'"
    ) -> KubernetesSettings:
        """Settings from server.yaml (a section of it, with lines, or a plain mapping); every problem names the key."""
        section = raw if isinstance(raw, yamlconfig.Section) else yamlconfig.Section.from_dict(raw, where)
        where = section.label if not section.from_file else f"{section.label} 'kubernetes'"
        values = yamlconfig.read(section, KUBERNETES_SETTINGS)
        if not values.get("remote_env_image"):
            raise UsageError(
                f"{where} needs 'remote_env_image': the remote-env image pushed where the cluster pulls from "
                "(`contestkit images build remote-env --with-roms`, then push it to the contest registry)."
            )
        for key in ("cpus", "env_cpu", "poll_seconds", "gpus", "ttl_seconds_after_finished", "disruption_retries",
                    "start_allowance_seconds", "start_timeout_seconds", "terminating_grace_seconds",
                    "log_read_timeout_seconds", "log_rereads", "cluster_start_retries",
                    "cluster_retry_seconds"):  # fmt: skip
            if values.get(key) is not None and values[key] < 0:
                raise UsageError(f"{section.where(key)}: '{section.name(key)}' must not be negative.")
        for key in (
            "memory",
            "env_memory",
            "results_size",
            "agent_out_size",
            "agent_ephemeral_storage",
            "env_ephemeral_storage",
        ):
            if values.get(key) is not None:
                values[key] = quantity(str(values[key]), f"{section.where(key)}: '{section.name(key)}'")
        settings = cls(**values)
        if not _DNS_LABEL.match(settings.namespace):
            raise UsageError(f"{where}: namespace '{settings.namespace}' is not a Kubernetes namespace name.")
        if not _DNS_LABEL.match(settings.job_prefix) or len(settings.job_prefix) > 20:
            raise UsageError(f"{where}: job_prefix must be a short lower-case name (letters, digits, '-').")
        if settings.network_probe_target and not re.match(r"^[^:\s]+:\d+$", settings.network_probe_target):
            raise UsageError(f"{where}: network_probe_target must be HOST:PORT (e.g. my-svc.my-ns.svc:8000).")
        if settings.env_cpu <= 0 or (settings.cpus is not None and settings.cpus <= settings.env_cpu):
            raise UsageError(f"{where}: cpus ({settings.cpus}) must exceed env_cpu ({settings.env_cpu}) > 0.")
        return settings


#: The ``kubernetes:`` keys and their types (read by :mod:`contestkit.yamlconfig`, like all of server.yaml).
KUBERNETES_SETTINGS: dict[str, yamlconfig.Setting] = yamlconfig.settings_of(
    KubernetesSettings,
    {
        "remote_env_image": "127.0.0.1:5000/contestkit/remote-env:1",
        "kubeconfig": "~/.kube/config",
        "context": "contest-cluster",
        "image_pull_secrets": "[contest-registry]",
        "cpus": "6",
        "memory": "56Gi",
        "agent_run_as_user": "1000",
        "env_run_as_user": "1000",
        "node_selector": "{contestkit/pool: eval}",
        "tolerations": "[{key: dedicated, operator: Equal, value: eval, effect: NoSchedule}]",
        "priority_class": "contest-eval",
        "allow_unenforced_network_policy": "true",
        "network_probe_target": "contestkit-server.contestkit.svc:8000",
    },
)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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
