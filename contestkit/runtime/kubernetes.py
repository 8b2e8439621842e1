"""Kubernetes as a runtime: one level-run is one pod of a ``batch/v1`` Job, watched like any session.

Why here, beside ``runtime.local`` and ``runtime.docker``: a level-run is already pod-shaped (two
containers sharing an in-memory volume, no network for the agent), and its lifecycle (start, watch,
stop, summarise, run again after a disruption) is :func:`contestkit.runs.evaluation.run_session`'s, the
same for all three runtimes. This module says only *how* a pod runs a level-run:

* :func:`render_level_job`: the Job (the team's agent image pinned by digest, the remote-env image,
  an ``emptyDir`` with ``medium: Memory`` at ``/root/compo/tmp`` as the bridge, no service-account
  token, a ``podFailurePolicy`` that re-runs disruptions and makes every crash final);
* :class:`ClusterApi`: the calls made of the API server, as JSON dictionaries (the tests drive it
  against an in-process fake, as no API server can run on the development machines);
* :class:`PodSession`: one pod as a runtime session. The pod has no network, so its results come
  back through its log as structured lines (``contestkit.runs.structured_log``), each file with its size
  and SHA-256 and numbered chunks, rebuilt and verified here; a broken stream is read again from
  where it broke (``sinceTime``), never from the start;
* :class:`KubernetesLauncher`: creates the Job, waits for its pod, refuses what a pod cannot honour
  and, for the lifecycle's retry hook, gives the next pod after a disruption.

Waiting is the cluster's, not the team's: the budget clock starts once both containers run, and a
pod that cannot start (unschedulable, an image that cannot be pulled, a refused configuration) ends
within ``start_timeout_seconds`` as an infrastructure failure with the cluster's own reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contestkit import __version__
from contestkit.containers import imageref
from contestkit.errors import ContestkitError, UsageError
from contestkit.runs import results, structured_log
from contestkit.runs.levelrun import EnvPlacement, LevelRunSpec, Scope, scope_names, to_argv
from contestkit.runtime.base import Runtime

if TYPE_CHECKING:
    from contestkit.server.executors.kubernetes_settings import KubernetesSettings

log = logging.getLogger("contestkit.runtime.kubernetes")

# -- where things are in the pod (the same paths as the Docker runtime's containers) ----------------

BRIDGE_MOUNT = "/root/compo/tmp"  # the agent's: its tmp/sock, as in 2018
# The env container mounts the same volume outside /root: it runs as a non-root user, and /root is
# not searchable by other users in the image (so /root/compo/tmp could not be reached).
ENV_BRIDGE_MOUNT = "/bridge"
OUT_MOUNT = "/root/compo/out"
RESULTS_MOUNT = "/results"
AGENT_CONTAINER = "agent"
ENV_CONTAINER = "remote-env"
ENV_COMMAND = ["python", "-m", "contestkit.runs.structured_log"]  # the env program, mirrored onto stdout

# -- labels --------------------------------------------------------------------------------------

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_CONTEST = "contestkit.org/contest"
LABEL_JOB = "contestkit.org/job"
LABEL_ATTEMPT = "contestkit.org/attempt"
LABEL_LEVEL = "contestkit.org/level"
LABEL_TEAM = "contestkit.org/team"
MANAGED_BY = "contestkit"
COMPONENT_LEVEL_RUN = "level-run"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
NETWORK_POLICY_NAME = "contestkit-level-runs-deny-all"

LOG_DRAIN = 30.0  # seconds a container's end waits for the rest of its log
STOPPED_EXIT = 137  # what a container stopped by a pod deletion reports when its end was not seen


_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgGtT]?)([iI]?)([bB]?)$")


def quantity(text: str, where: str = "memory") -> str:
    """A memory size as Kubernetes writes it: Docker's ``56g`` (binary units) is ``56Gi``."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise UsageError(f"{where}: '{text}' is not a memory size; write e.g. 56Gi or 56g.")
    number, unit, _, _ = match.groups()
    return number + (unit.upper() + "i" if unit else "")


def label_value(text: str) -> str:
    """A label value (at most 63 characters of letters, digits, ``-_.``, alphanumeric at both ends)."""
    return _LABEL_VALUE.sub("-", text)[:63].strip("-_.") or "none"


def cpu_quantity(cpus: float) -> str:
    return f"{int(round(cpus * 1000))}m"


# -- which level-run a Job is ----------------------------------------------------------------------


@dataclass(frozen=True)
class LevelIdentity:
    """Which level of which job attempt of which team a Job runs: its name and labels come from it."""

    job_id: int
    attempt: int
    index: int
    team: str | None = None

    def job_name(self, settings: KubernetesSettings) -> str:
        # Deterministic, so that a server that restarts finds (adopts) the Job instead of running it twice.
        return f"{settings.job_prefix}-j{self.job_id}-a{self.attempt}-l{self.index}"

    def labels(self, settings: KubernetesSettings) -> dict[str, str]:
        labels = {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_COMPONENT: COMPONENT_LEVEL_RUN,
            LABEL_CONTEST: label_value(settings.contest),
            LABEL_JOB: str(self.job_id),
            LABEL_ATTEMPT: str(self.attempt),
            LABEL_LEVEL: str(self.index),
        }
        if self.team:
            labels[LABEL_TEAM] = label_value(self.team)
        return labels


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def contest_selector(settings: KubernetesSettings) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_LEVEL_RUN,
        LABEL_CONTEST: label_value(settings.contest),
    }


# -- rendering ---------------------------------------------------------------------------------------


def container_security(run_as_user: int | None) -> dict[str, Any]:
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context.update(runAsUser=run_as_user, runAsGroup=run_as_user, runAsNonRoot=run_as_user != 0)
    return context


def env_argv(spec: LevelRunSpec) -> list[str]:
    """The env program's arguments in the pod: the same derivation as every other runtime's."""
    return to_argv(spec, EnvPlacement(bridge_dir=Path(ENV_BRIDGE_MOUNT) / "sock", results_dir=Path(RESULTS_MOUNT)))


def placement(settings: KubernetesSettings) -> dict[str, Any]:
    """Where and with what a level-run's pod is scheduled (pull secrets, nodes, tolerations, priority):
    one place, so the NetworkPolicy probe pod lands where level-runs do and meets the same policy."""
    spec: dict[str, Any] = {}
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.priority_class:
        spec["priorityClassName"] = settings.priority_class
    return spec


def render_level_job(
    spec: LevelRunSpec, identity: LevelIdentity, settings: KubernetesSettings, *, grace_seconds: float
) -> dict[str, Any]:
    """The ``batch/v1`` Job of one level-run (a plain dictionary, as the API server takes it).

    ``grace_seconds`` is server.yaml's ``budget_grace_seconds``: a pod may run its wall-clock budget
    plus that long (image pull and start included) before Kubernetes stops it. The deadline is the
    pod's, not the Job's, so that a re-run after a disruption gets a full budget; the Job's own
    deadline bounds all its re-runs together.
    The pod's deadline also leaves ``start_allowance_seconds`` for scheduling and image pulls, which
    are the cluster's time, not the team's (the budget itself starts once both containers run).
    """
    if not spec.image:
        raise UsageError("A Kubernetes level-run needs the agent image.")
    labels = identity.labels(settings)
    pod_deadline = int(spec.wallclock_limit + grace_seconds + settings.start_allowance_seconds)
    gpus = max(settings.gpus, 1) if spec.gpus else settings.gpus
    agent_cpu = spec.cpus if spec.cpus is not None else (settings.cpus or spec.agent_cpus)
    agent_memory = quantity(spec.memory or settings.memory or spec.agent_memory, "memory")
    agent_resources: dict[str, Any] = {
        "requests": {
            "cpu": cpu_quantity(agent_cpu - settings.env_cpu),
            "memory": agent_memory,
            "ephemeral-storage": settings.agent_ephemeral_storage,
        },
        "limits": {
            "cpu": cpu_quantity(agent_cpu),
            "memory": agent_memory,
            "ephemeral-storage": settings.agent_ephemeral_storage,
        },
    }
    if gpus:
        agent_resources["requests"]["nvidia.com/gpu"] = str(gpus)
        agent_resources["limits"]["nvidia.com/gpu"] = str(gpus)
    agent = {
        "name": AGENT_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "CONTESTKIT_OUT_DIR", "value": OUT_MOUNT},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            *({"name": key, "value": value} for key, value in sorted(spec.env_vars.items())),
        ],
        "resources": agent_resources,
        "volumeMounts": [
            {"name": "bridge", "mountPath": BRIDGE_MOUNT},
            {"name": "agent-out", "mountPath": OUT_MOUNT},
        ],
        "securityContext": container_security(settings.agent_run_as_user),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    env = {
        "name": ENV_CONTAINER,
        "image": spec.remote_image or settings.remote_env_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ENV_COMMAND,
        "args": env_argv(spec),
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "resources": {
            "requests": {
                "cpu": cpu_quantity(settings.env_cpu),
                "memory": settings.env_memory,
                "ephemeral-storage": settings.env_ephemeral_storage,
            },
            "limits": {
                "cpu": cpu_quantity(agent_cpu),
                "memory": settings.env_memory,
                "ephemeral-storage": settings.env_ephemeral_storage,
            },
        },  # fmt: skip
        "volumeMounts": [
            {"name": "bridge", "mountPath": ENV_BRIDGE_MOUNT},
            {"name": "results", "mountPath": RESULTS_MOUNT},
        ],
        "securityContext": container_security(settings.env_run_as_user),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": pod_deadline,
        "terminationGracePeriodSeconds": 15,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [env, agent],
        "volumes": [
            {"name": "bridge", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(spec.bridge_tmpfs_size)}},
            {"name": "results", "emptyDir": {"sizeLimit": settings.results_size}},
            {"name": "agent-out", "emptyDir": {"sizeLimit": _out_size(spec, settings)}},
        ],
    }
    pod_spec.update(placement(settings))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": identity.job_name(settings),
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": {"contestkit.org/version": __version__},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": pod_deadline * (1 + settings.disruption_retries),
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "podReplacementPolicy": "Failed",  # a re-run starts once the disrupted pod has fully ended
            "podFailurePolicy": {
                "rules": [
                    # A node drain, an eviction or a preemption: run the level again, not the team's failure.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # An agent crash or an env failure is final, exactly as with Docker.
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": AGENT_CONTAINER, "operator": "NotIn", "values": [0]},
                    },
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": ENV_CONTAINER, "operator": "NotIn", "values": [0]},
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels, "annotations": {SAFE_TO_EVICT: "false"}},
                "spec": pod_spec,
            },
        },
    }


def _out_size(spec: LevelRunSpec, settings: KubernetesSettings) -> str:
    """The agent's out/ volume: the host's ``agent_out_limit`` when set, else ``agent_out_size``."""
    from contestkit.runs.levelrun import OUT_LIMIT

    return settings.agent_out_size if spec.out_limit == OUT_LIMIT else f"{max(1, spec.out_limit // 2**20)}Mi"


def render_network_policy(settings: KubernetesSettings) -> dict[str, Any]:
    """Deny every ingress and egress of the contest's level-run pods (no rules = nothing allowed)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": NETWORK_POLICY_NAME,
            "namespace": settings.namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CONTEST: label_value(settings.contest)},
        },
        "spec": {
            "podSelector": {"matchLabels": contest_selector(settings)},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


# -- the API calls ---------------------------------------------------------------------------------


class ClusterApi:
    """The calls the executor makes, as JSON dictionaries, over the official client's API objects.

    ``batch``, ``core`` and ``networking`` are ``BatchV1Api``, ``CoreV1Api`` and ``NetworkingV1Api``
    (or anything with their methods: the tests pass a fake). Responses are read raw
    (``_preload_content=False``) so the executor sees the API server's own JSON.
    """

    def __init__(self, batch: Any, core: Any, networking: Any, namespace: str, read_timeout: float = 120.0) -> None:
        self.batch, self.core, self.networking, self.namespace = batch, core, networking, namespace
        self.read_timeout = read_timeout

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(self.batch.create_namespaced_job(self.namespace, body, _preload_content=False))

    def _read(self, call: Callable[..., Any], name: str) -> dict[str, Any] | None:
        """One object by name; None when the cluster has none of that name (404)."""
        try:
            return self._json(call(name, self.namespace, _preload_content=False))
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise

    def read_job(self, name: str) -> dict[str, Any] | None:
        return self._read(self.batch.read_namespaced_job, name)

    def list_jobs(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        response = self.batch.list_namespaced_job(
            self.namespace, label_selector=selector(labels), _preload_content=False
        )
        return list(self._json(response).get("items") or [])

    def delete_job(self, name: str, grace_seconds: int | None = None) -> None:
        """Delete a Job and, first, its pods (foreground: the Job goes once they are gone)."""
        try:
            self.batch.delete_namespaced_job(
                name, self.namespace, propagation_policy="Foreground", grace_period_seconds=grace_seconds
            )
        except Exception as exc:
            if _status(exc) != 404:
                raise

    def list_pods(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector(labels), _preload_content=False
        )
        return list(self._json(response).get("items") or [])

    def read_pod(self, name: str) -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_pod, name)

    def create_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        """A bare pod (the NetworkPolicy probe's; level-runs are Jobs)."""
        return self._json(self.core.create_namespaced_pod(self.namespace, body, _preload_content=False))

    def delete_pod(self, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
        except Exception as exc:
            if _status(exc) != 404:
                raise

    def follow_log(self, pod: str, container: str, since: str | None = None) -> Iterator[str]:
        """The container's log, each line prefixed with the kubelet's timestamp, until the container ends.

        ``since``: an RFC 3339 timestamp to start from (the API takes whole seconds: the caller skips
        what it had). A read that gets nothing for ``log_read_timeout_seconds`` raises, so a stream
        that hangs is read again instead of stalling the level.
        """
        kwargs: dict[str, Any] = {}
        if since:
            kwargs["since_time"] = since.split(".")[0].rstrip("Z") + "Z"
        response = self.core.read_namespaced_pod_log(
            pod,
            self.namespace,
            container=container,
            follow=True,
            timestamps=True,
            _preload_content=False,
            _request_timeout=(10.0, self.read_timeout),
            **kwargs,
        )
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if buffer:
                yield buffer.decode("utf-8", errors="replace")
        finally:
            response.release_conn()

    def ensure_network_policy(self, body: dict[str, Any]) -> bool:
        """Create the policy when it is missing; True when this call created it."""
        name = body["metadata"]["name"]
        try:
            self.networking.read_namespaced_network_policy(name, self.namespace, _preload_content=False)
            return False
        except Exception as exc:
            if _status(exc) != 404:
                raise
        self.networking.create_namespaced_network_policy(self.namespace, body, _preload_content=False)
        return True


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


def connect(settings: KubernetesSettings) -> ClusterApi:
    """The API server, through the in-cluster service account or a kubeconfig."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise ContestkitError(
            "executor: kubernetes needs the kubernetes package: pip install 'contestkit[server]'."
        ) from None
    try:
        if settings.kubeconfig is None and _in_cluster():
            config.load_incluster_config()
        else:
            config.load_kube_config(config_file=settings.kubeconfig, context=settings.context)
    except Exception as exc:  # noqa: BLE001 - the client raises several kinds; one sentence for all
        raise ContestkitError(
            f"Cannot reach the Kubernetes cluster ({exc}); set 'kubeconfig' (and 'context') under 'kubernetes' "
            "in server.yaml, or run the server inside the cluster."
        ) from None
    api = client.ApiClient()
    return ClusterApi(
        client.BatchV1Api(api),
        client.CoreV1Api(api),
        client.NetworkingV1Api(api),
        settings.namespace,
        settings.log_read_timeout_seconds,
    )


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


# -- one pod of a level-run, seen as a runtime session ---------------------------------------------


class Blame(str, Enum):
    """Whose failure a pod that never started is (DOCFILE's table says which reason is which)."""

    TEAM = "team"  # the team's own image cannot be pulled: a tag or digest that does not exist
    CLUSTER = "cluster"  # quota, admission, no node, a registry or pull secret of the host's


# Waiting reasons of a container that will not start without someone acting.
STUCK_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)
_TEAM_PULL_MESSAGE = re.compile(r"not found|manifest unknown|does not exist|no such", re.IGNORECASE)


def container_states(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    status = pod.get("status") or {}
    return {c.get("name"): c.get("state") or {} for c in status.get("containerStatuses") or []}


def _disrupted(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions)


def _stamp(text: Any) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ns(stamp: str) -> int:
    """An RFC 3339 timestamp with nanoseconds (the kubelet's log prefix) as integer nanoseconds."""
    head, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return int(seconds) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def running_since(pod: Mapping[str, Any]) -> float | None:
    """When the later of the pod's two containers started running (epoch seconds), or None before both run."""
    states = container_states(pod)
    starts = []
    for name in (ENV_CONTAINER, AGENT_CONTAINER):
        state = states.get(name) or {}
        started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
        if state.get("terminated") and not started:
            started = (pod.get("status") or {}).get("startTime")
        stamp = _stamp(started)
        if stamp is None:
            return None
        starts.append(stamp)
    return max(starts)


#: The longest wait between two tries of a pod the cluster could not start.
MAX_CLUSTER_BACKOFF = 600.0


@dataclass(frozen=True)
class ClusterRetry:
    """A level-run tried again because the cluster could not start its pod: what the host is told."""

    job: str  # the Kubernetes Job's name
    reason: str  # the cluster's own words
    attempt: int  # 1 for the first retry
    retries: int  # cluster_start_retries
    delay: float  # seconds until the new Job

    def sentence(self) -> str:
        return (
            f"The cluster could not start the pod of {self.job} ({self.reason}); it is tried again in "
            f"{self.delay:g} s (retry {self.attempt} of {self.retries})."
        )


def why_stuck(pod: Mapping[str, Any], image: str | None) -> tuple[str, Blame] | None:
    """The cluster's reason a pod cannot start, in its own words, and whose it is; None while it may still start."""
    status = pod.get("status") or {}
    for cstatus in status.get("containerStatuses") or []:
        waiting = (cstatus.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in STUCK_REASONS:
            message = str(waiting.get("message") or "").strip()
            team = cstatus.get("name") == AGENT_CONTAINER and (
                reason == "InvalidImageName" or bool(_TEAM_PULL_MESSAGE.search(message))
            )
            what = f"{cstatus.get('name')} container: {reason}" + (f" ({message})" if message else "")
            return what, Blame.TEAM if team else Blame.CLUSTER
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            if condition.get("reason") == "Unschedulable":
                return f"Unschedulable ({condition.get('message', '')})".replace(" ()", ""), Blame.CLUSTER
    return None


class _LogFollower(threading.Thread):
    """Follows one container's log into the results directory until it ends, resuming where it broke.

    The env container's structured lines become files (progress.json while it runs, every results
    file at its end, verified by size and SHA-256); other lines are the container's output. Kubernetes
    serves stdout and stderr as one stream, so both ``-stdout.txt`` and ``-stderr.txt`` receive it.
    Lines carry the kubelet's timestamps: a broken stream, a read timeout or a gap in a file's chunks
    is read again from the last good line (``sinceTime``, lines up to it skipped), never from the
    start, at most ``log_rereads`` times in a row without progress.
    """

    def __init__(self, session: PodSession, container: str, outputs: tuple[Path, Path], parse: bool) -> None:
        super().__init__(daemon=True, name=f"log-{session.pod}-{container}")
        self.session, self.container, self.outputs, self.parse = session, container, outputs, parse
        self.ended = threading.Event()
        self.end: dict[str, Any] | None = None
        self.assembler = structured_log.FileAssembler(session.results_dir)
        self.error: str | None = None
        self.last_ns = 0  # the last line taken
        self.last_stamp: str | None = None
        self.reads = 0

    def run(self) -> None:
        handles = [open(path, "a", encoding="utf-8") for path in self.outputs]  # noqa: SIM115 - closed below
        settings = self.session.launcher.settings
        failures = 0
        try:
            while not self.session.closed.is_set():
                before = self.last_ns
                outcome = self._follow_once(handles)
                if outcome is True:
                    return
                # Only reads that should have reached the end count: a quiet container that is still
                # running (a read timeout, a dropped connection) is simply followed again.
                failures = 0 if self.last_ns > before or not self._container_ended() else failures + 1
                if failures > settings.log_rereads:
                    self.error = (
                        f"The {self.container} container's log could not be read to its end after "
                        f"{failures} tries, {str(outcome).rstrip('.')}; its results were not scored."
                    )
                    return
                if self.session.closed.wait(min(settings.poll_seconds, 1.0)):
                    return
        finally:
            for handle in handles:
                handle.close()
            self.ended.set()

    def _container_ended(self) -> bool:
        pod = self.session.launcher.pods.get(self.session.pod or "")
        return pod is None or "terminated" in container_states(pod).get(self.container, {})

    def _follow_once(self, handles: list[Any]) -> bool | str:
        """One read of the log; True when it has been read to the container's end, else why it stopped."""
        api, pod = self.session.launcher.api, self.session.pod
        self.reads += 1
        try:
            for raw in api.follow_log(pod, self.container, since=self.last_stamp):
                if self.session.closed.is_set():
                    return True
                stamp, _, line = raw.partition(" ")
                try:
                    at = _ns(stamp)
                except ValueError:
                    at, line = self.last_ns + 1, raw
                if at <= self.last_ns:
                    continue  # read before the stream broke
                self._take(line, handles)
                self.last_ns, self.last_stamp = at, stamp
        except structured_log.IntegrityError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - not started yet, a dropped connection, a read timeout
            status = _status(exc)
            if status == 404:
                return True  # the pod is gone: nothing more will come
            return f"{type(exc).__name__}: {exc}"
        pod_doc = api.read_pod(pod)
        if pod_doc is not None and "terminated" not in container_states(pod_doc).get(self.container, {}):
            return "the stream ended before the container"
        if self.parse and self.end is None:
            return "the log ended without its end record"
        return True

    def _take(self, line: str, handles: list[Any]) -> None:
        record = structured_log.parse(line) if self.parse else None
        if record is None:
            for handle in handles:
                handle.write(line + "\n")
                handle.flush()
        elif record.kind is structured_log.RecordKind.PROGRESS:
            results.write_json(self.session.results_dir / results.PROGRESS, record.data)
        elif record.kind is structured_log.RecordKind.FILE:
            self.assembler.add(record.data)
        elif record.kind is structured_log.RecordKind.END:
            missing = self.assembler.missing(record.data)
            if missing:
                raise structured_log.IntegrityError(f"Results came back incomplete: {', '.join(missing[:5])}.")
            self.end = record.data


class PodSession:
    """The pod of a level-run's Job as ``contestkit.runs.evaluation`` watches a runtime session.

    It first waits for the Job's pod (no budget is charged meanwhile: :meth:`budget_start` is None until
    both containers run) and ends the wait within ``start_timeout_seconds`` when the cluster says the
    pod cannot start. A container's exit status is reported once its end is seen *and* its log has
    been read to the end, so the results are complete when they are summarised. Kubernetes cannot stop
    one container of a pod: stopping either half deletes the Job, unless the launcher was let go of
    (``detached``), when nothing is stopped and the Job is adopted at the next start.
    """

    def __init__(self, launcher: KubernetesLauncher, results_dir: Path, exclude: frozenset[str] = frozenset()) -> None:
        self.launcher = launcher
        self.results_dir = results_dir
        self.exclude = exclude  # pods of earlier attempts (disrupted)
        self.pod: str | None = None
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.exits: dict[str, int] = {}
        self.exit_seen: dict[str, float] = {}
        self.disrupted = self.vanished = self.deadline_exceeded = self.stop_requested = False
        self.stuck: tuple[str, Blame] | None = None
        self.created = time.monotonic()
        self.terminating_since: float | None = None
        self.started_at: float | None = None  # epoch seconds both containers ran
        self.followers: dict[str, _LogFollower] = {}
        self._last_look = 0.0

    # -- what the evaluation asks --

    def budget_start(self) -> float | None:
        """The monotonic time the budget started (both containers running), None while the pod waits."""
        self._look()
        if self.started_at is None:
            return None
        return time.monotonic() - max(0.0, time.time() - self.started_at)

    def env_exit(self) -> int | None:
        return self._exit(ENV_CONTAINER)

    def agent_exit(self) -> int | None:
        return self._exit(AGENT_CONTAINER)

    def stop_agent(self, grace: float) -> None:
        self._stop(grace)

    def stop_env(self, grace: float) -> None:
        self._stop(grace)

    def close(self) -> None:
        self.closed.set()
        for thread in self.followers.values():
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=1)

    @property
    def interrupted(self) -> bool:
        """This pod's run ended without a result of its own: disrupted, or deleted from outside."""
        return self.disrupted or self.vanished

    def rerun(self) -> PodSession | None:
        """The lifecycle's retry hook: the next pod after a disruption, or None when this run is over."""
        return self.launcher.next_session(self)

    def summary_extras(self) -> dict[str, Any]:
        return self.launcher.summary_extras(self)

    # -- the pod --

    def _look(self) -> None:
        """Read the pod's state (from the launcher's shared list, refreshed at most every poll)."""
        now = time.monotonic()
        with self.lock:
            if now - self._last_look < min(self.launcher.settings.poll_seconds, 0.5) or self.closed.is_set():
                return
            self._last_look = now
        launcher = self.launcher
        if self.pod is None:
            self._find_pod()
            if self.pod is None:
                return
        pod = launcher.pods.get(self.pod)
        with self.lock:
            if pod is None:
                if self.stop_requested:
                    for name in (ENV_CONTAINER, AGENT_CONTAINER):
                        self.exits.setdefault(name, STOPPED_EXIT)
                elif not self.exits.keys() >= {ENV_CONTAINER, AGENT_CONTAINER}:
                    self.vanished = True  # deleted from outside, or replaced after a disruption: run again
                return
            if self.started_at is None:
                self.started_at = running_since(pod)
                if self.started_at is None and not self.exits:
                    self.stuck = why_stuck(pod, launcher.spec.image)
            if _disrupted(pod) and not self.exits.keys() >= {ENV_CONTAINER, AGENT_CONTAINER}:
                self.disrupted = True
            if (pod.get("status") or {}).get("reason") == "DeadlineExceeded":
                self.deadline_exceeded = True
            deleting = (pod.get("metadata") or {}).get("deletionTimestamp")
            if deleting and not self.stop_requested:
                # Stuck Terminating (a lost node never confirms): past the grace, treat it as gone.
                self.terminating_since = self.terminating_since or now
                if now - self.terminating_since > launcher.settings.terminating_grace_seconds:
                    self.vanished = True
            for name, state in container_states(pod).items():
                terminated = state.get("terminated")
                if terminated is not None and name in (ENV_CONTAINER, AGENT_CONTAINER):
                    self.exits.setdefault(name, int(terminated.get("exitCode", STOPPED_EXIT)))
                    self.exit_seen.setdefault(name, now)

    def _find_pod(self) -> None:
        launcher = self.launcher
        pods = [
            p
            for p in launcher.pods.of_job(launcher.job)
            if p["metadata"]["name"] not in self.exclude and not _disrupted(p)
        ]
        if pods:
            pods.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
            self.pod = str(pods[-1]["metadata"]["name"])
            rd = self.results_dir
            self.followers = {
                ENV_CONTAINER: _LogFollower(
                    self, ENV_CONTAINER, (rd / results.REMOTE_STDOUT, rd / results.REMOTE_STDERR), parse=True
                ),
                AGENT_CONTAINER: _LogFollower(
                    self, AGENT_CONTAINER, (rd / results.AGENT_STDOUT, rd / results.AGENT_STDERR), parse=False
                ),
            }
            for follower in self.followers.values():
                follower.start()
            return
        state = launcher.ensure_job()
        with self.lock:
            if state == "ended":
                self.vanished = True  # its pod was deleted before we saw it (the Job failed): run again
            elif state is not None:
                self.stuck = state

    def waited_out(self) -> bool:
        """The pod could not start and has waited ``start_timeout_seconds``: the level ends (not the team's)."""
        return self.stuck is not None and time.monotonic() - self.created > self.launcher.settings.start_timeout_seconds

    def _exit(self, name: str) -> int | None:
        self._look()
        with self.lock:
            if self.interrupted or self.waited_out():
                return -1
            code = self.exits.get(name)
        if code is None:
            return None
        follower = self.followers.get(name)
        if follower is None:
            return code
        waited = time.monotonic() - self.exit_seen.get(name, time.monotonic())
        return code if follower.ended.wait(timeout=0.05) or self.closed.is_set() or waited > LOG_DRAIN else None

    def _stop(self, grace: float) -> None:
        if self.launcher.detached.is_set():
            return
        with self.lock:
            if self.stop_requested:
                return
            self.stop_requested = True
        self.launcher.delete(grace)

    def wait_logs(self, timeout: float) -> None:
        if self.started_at is None or self.interrupted:
            return  # never ran, or gone: there is no end of a log to wait for
        deadline = time.monotonic() + timeout
        for follower in self.followers.values():
            follower.ended.wait(max(0.0, deadline - time.monotonic()))

    def log_error(self) -> str | None:
        """Why the results cannot be trusted (a file cut short, no end record), or None."""
        env = self.followers.get(ENV_CONTAINER)
        if env is None or self.interrupted or self.stop_requested:
            return None
        if env.error:
            return env.error
        if env.ended.is_set() and env.end is None:
            return "The env container's log ended without its end record; its results were not scored."
        return None


class PodCache:
    """The contest's level-run pods, one list-by-label call per poll for all runs (not one GET per pod).

    At 500 concurrent level-runs one GET per pod every 2 s is 250 requests/s; one list per poll is
    0.5/s whatever the number of runs (``bench/k8s_api_load.py`` measures both).
    """

    def __init__(self, api: ClusterApi, settings: KubernetesSettings) -> None:
        self.api, self.settings = api, settings
        self._lock = threading.Lock()
        self._at = -1e9
        self._pods: dict[str, dict[str, Any]] = {}

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.settings.poll_seconds:
                return
            try:
                items = self.api.list_pods(contest_selector(self.settings))
            except Exception:  # noqa: BLE001 - an API hiccup (429, 5xx, timeout): the last list stands
                log.debug("listing level-run pods failed", exc_info=True)
                self._at = time.monotonic()
                return
            self._pods = {p["metadata"]["name"]: p for p in items}
            self._at = time.monotonic()

    def get(self, name: str) -> dict[str, Any] | None:
        self._refresh()
        return self._pods.get(name)

    def of_job(self, job: str) -> list[dict[str, Any]]:
        self._refresh()
        return [p for p in self._pods.values() if (p["metadata"].get("labels") or {}).get("job-name") == job]


class KubernetesLauncher:
    """The Kubernetes runtime's launcher: one level-run's Job, and its pods one after another.

    One launcher per level-run (it knows the Job's name and counts the disruptions); ``pods`` is the
    cache shared by every launcher of one executor.
    """

    name = Runtime.KUBERNETES
    # LevelRunSpec fields a pod honours; the others are refused (evaluation.refuse_unhonoured).
    # No ``cpuset`` (the kubelet's CPU manager places pods), no local ``agent`` or ``project_dir``;
    # ``pids_limit`` and ``log_limit`` are the kubelet's settings, not a pod's. ``out_limit`` sizes
    # the agent's out/ volume (the kubelet evicts a pod past it).
    honours = (scope_names(Scope.ENV, Scope.DOCKER) - {"pids_limit", "log_limit"}) | {"env_vars", "out_limit"}

    def __init__(
        self,
        api: ClusterApi,
        settings: KubernetesSettings,
        identity: LevelIdentity,
        spec: LevelRunSpec,
        *,
        pods: PodCache,
        grace_seconds: float,
        cancel: threading.Event,
        on_retry: Callable[[ClusterRetry], None] | None = None,
    ) -> None:
        self.api, self.settings, self.identity, self.spec, self.pods = api, settings, identity, spec, pods
        self.grace_seconds = grace_seconds
        self.cancel = cancel
        self.on_retry = on_retry  # the server's event line for each retry: the host sees the cluster wait
        self.detached = threading.Event()
        self.job = identity.job_name(settings)  # the Job's name
        self.disruptions = 0
        self.disruption_error: str | None = None
        self.cluster_retries = 0  # pods the cluster could not start, tried again
        self._job_checked = 0.0

    def check(self, spec: LevelRunSpec) -> None:
        if spec.image is None or imageref.parse(spec.image).digest is None:
            raise ContestkitError(
                f"The image {spec.image} is not pinned by digest; the cluster must run the very image that was "
                "submitted (submit with `contestkit submit`, which pins it)."
            )

    def render(self) -> dict[str, Any]:
        return render_level_job(self.spec, self.identity, self.settings, grace_seconds=self.grace_seconds)

    def create(self) -> None:
        """Create the Job; one sentence with the cluster's reason when it is refused (admission, quota)."""
        try:
            self.api.create_job(self.render())
        except Exception as exc:
            if _status(exc) == 409:
                return  # made a moment ago (by us, or a server that ran before): it is the same level-run
            raise ContestkitError(f"Kubernetes refused the Job {self.job}: {api_reason(exc)}.") from None

    def ensure_job(self) -> tuple[str, Blame] | str | None:
        """While no pod is there: make the Job again when it vanished; why it cannot run, if it cannot;
        ``"ended"`` when the Job ended without a pod to follow (deleted from outside)."""
        now = time.monotonic()
        if now - self._job_checked < self.settings.poll_seconds:
            return None
        self._job_checked = now
        try:
            job = self.api.read_job(self.job)
            if job is None:
                self.create()
            elif _job_ended(job):
                return "ended"
        except ContestkitError as exc:
            return str(exc).rstrip("."), Blame.CLUSTER
        except Exception as exc:  # noqa: BLE001 - 429/5xx/timeout: the next look tries again
            log.debug("reading Job %s: %s", self.job, exc)
        return None

    def start(self, spec: LevelRunSpec, results_dir: Path) -> PodSession:
        """A session for the Job's pod (the Job is made by the executor, or adopted)."""
        return PodSession(self, results_dir)

    def delete(self, grace: float | None = None) -> None:
        self.api.delete_job(self.job, None if grace is None else max(0, int(grace)))

    def next_session(self, session: PodSession) -> PodSession | None:
        """After a disruption or an outside deletion, the level runs again in a new pod (fresh budget);
        after a start the cluster could not make for its own reasons, again after a backoff."""
        if self.cancel.is_set():
            return None
        if session.waited_out() and session.stuck is not None and session.stuck[1] is Blame.CLUSTER:
            return self._retry_start(session, session.stuck[0])
        if not session.interrupted:
            return None
        self.disruptions += 1
        if self.disruptions > self.settings.disruption_retries:
            self.disruption_error = (
                f"The level's pod was disrupted {self.disruptions} times (node drain, eviction, preemption "
                "or deletion); it was not run again."
            )
            return None
        log.warning("level-run %s was disrupted; it runs again (%s)", self.job, self.disruptions)
        if session.vanished:
            try:
                job = self.api.read_job(self.job)
                stuck = session.terminating_since is not None  # its pod will never go: a new Job
                if job is None or stuck or _job_ended(job) or (job.get("metadata") or {}).get("deletionTimestamp"):
                    self.delete(0)
                    self.create()
            except Exception:  # noqa: BLE001 - the next session's look makes it again
                log.debug("re-creating Job %s", self.job, exc_info=True)
        return PodSession(self, session.results_dir, session.exclude | {session.pod or ""})

    def _retry_start(self, session: PodSession, reason: str) -> PodSession | None:
        """The cluster could not start the pod (quota, no node, the host's registry): not the team's, so
        the level waits a backoff and gets a new Job, up to ``cluster_start_retries`` times. The wait is
        the cluster's: no budget runs while no pod does, and a cancel ends the wait at once."""
        if self.cluster_retries >= self.settings.cluster_start_retries:
            return None  # summary_extras says how often it was tried
        self.cluster_retries += 1
        delay = min(self.settings.cluster_retry_seconds * 2 ** (self.cluster_retries - 1), MAX_CLUSTER_BACKOFF)
        retry = ClusterRetry(self.job, reason, self.cluster_retries, self.settings.cluster_start_retries, delay)
        log.warning("%s", retry.sentence())
        if self.on_retry is not None:
            self.on_retry(retry)
        self.delete(0)
        if self.cancel.wait(delay):
            return None
        try:
            self.create()
        except ContestkitError as exc:  # refused again (quota): the next session's look reports it
            log.debug("re-creating Job %s: %s", self.job, exc)
        return PodSession(self, session.results_dir, session.exclude | {session.pod or ""})

    def summary_extras(self, session: PodSession) -> dict[str, Any]:
        extras: dict[str, Any] = {"kubernetes_job": self.job, "disruptions": self.disruptions}
        if session.stuck is not None and session.started_at is None:
            reason, blame = session.stuck
            tries = f" ({self.cluster_retries + 1} tries)" if self.cluster_retries else ""
            extras["error"] = (
                f"The cluster could not start the level's pod within {self.settings.start_timeout_seconds:g} s"
                f"{tries}: {reason}."
            )
            extras["cluster_retries"] = self.cluster_retries
            extras["infrastructure_failure"] = blame.value
        elif self.disruption_error:
            extras["error"] = self.disruption_error
        elif (problem := session.log_error()) is not None:
            extras["error"], extras["infrastructure_failure"] = problem, Blame.CLUSTER.value
            extras["score"] = None  # a file cut short is never scored
        elif session.deadline_exceeded and not session.interrupted:
            extras["error"] = (
                f"Kubernetes stopped the level: it ran past its wall-clock budget of {self.spec.wallclock_limit:g} s "
                "plus the grace period."
            )
        return extras


def _job_ended(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


def api_reason(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message") if body else None
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or getattr(exc, "reason", None) or exc)
