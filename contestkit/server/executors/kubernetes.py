"""The Kubernetes executor: each level-run is one ``batch/v1`` Job in a namespace of an existing cluster.

Why: one machine holds a handful of 12-hour, 6-core level-runs; the 2018 contest needed about 90 at
once on average and over a thousand at the deadline. A level-run is already pod-shaped (two
containers sharing an in-memory volume, no network for the agent), so a pod is its unit here:

* the team's agent image, pinned by digest, and the remote-env image, sharing an ``emptyDir`` with
  ``medium: Memory`` at ``/root/compo/tmp`` (the bridge);
* no network at all: a NetworkPolicy denies every ingress and egress of level-run pods. A policy
  applies to the whole pod, so the env container cannot send results either: it prints them as
  structured lines (``contestkit.structured_log``) and the server reads the pod's log;
* the results directory is then rebuilt from those lines, and the summary, score and reward curve are
  computed by the same code as ``contestkit eval`` (``evaluation``, ``results``, ``scoring``,
  ``curves``), so the data directory gets what the Docker executor gives it;
* ``backoffLimit: 0`` plus a ``podFailurePolicy`` that ignores disruptions (node drain, eviction,
  preemption: the pod's ``DisruptionTarget`` condition): the Job controller runs the level again in a
  new pod without counting it as the team's failure; an agent crash or a budget end is final;
* a server restart does not stop the Jobs: ``release`` leaves them running, and ``adopt`` follows
  them again by name and labels; ``running``/``discard`` let the scheduler delete whatever runs for
  a job it considers over.

Everything the executor asks of the API server goes through :class:`ClusterApi`, a thin layer over
the official ``kubernetes`` client that speaks plain JSON dictionaries (the tests drive it against an
in-process fake of those calls, as no API server can run on the development machines).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from contestkit import __version__, imageref, results, structured_log, yamlconfig
from contestkit.errors import ContestkitError, UsageError
from contestkit.levelrun import EnvPlacement, LevelRunSpec, to_argv
from contestkit.server.executors import Executor, LevelRun, LevelTask, RunningLevel

log = logging.getLogger("contestkit.server.executors.kubernetes")

# -- where things are in the pod (the same paths as the Docker runtime's containers) ----------------

BRIDGE_MOUNT = "/root/compo/tmp"
OUT_MOUNT = "/root/compo/out"
RESULTS_MOUNT = "/results"
AGENT_CONTAINER = "agent"
ENV_CONTAINER = "remote-env"
ENV_COMMAND = ["python", "-m", "contestkit.structured_log"]  # the env program, mirrored onto stdout

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
    env_run_as_user: int | None = None  # the remote-env image runs as root by default, as with Docker
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    priority_class: str | None = None
    ttl_seconds_after_finished: int = 86_400  # a finished Job (and its log) stays a day for a server that was down
    disruption_retries: int = 2  # re-runs after disruptions, bounded by the Job's deadline
    manage_network_policy: bool = True  # create the deny-all NetworkPolicy at start when it is missing
    poll_seconds: float = 2.0  # how often a running pod's state is read

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
        for key in ("cpus", "env_cpu", "poll_seconds", "gpus", "ttl_seconds_after_finished", "disruption_retries"):
            if values.get(key) is not None and values[key] < 0:
                raise UsageError(f"{section.where(key)}: '{section.name(key)}' must not be negative.")
        for key in ("memory", "env_memory", "results_size", "agent_out_size"):
            if values.get(key) is not None:
                values[key] = quantity(str(values[key]), f"{section.where(key)}: '{section.name(key)}'")
        settings = cls(**values)
        if not _DNS_LABEL.match(settings.namespace):
            raise UsageError(f"{where}: namespace '{settings.namespace}' is not a Kubernetes namespace name.")
        if not _DNS_LABEL.match(settings.job_prefix) or len(settings.job_prefix) > 20:
            raise UsageError(f"{where}: job_prefix must be a short lower-case name (letters, digits, '-').")
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
    },
)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
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


def identity_of(task: LevelTask) -> LevelIdentity:
    """The identity of a scheduler's task: its job, attempt, level and team."""
    return LevelIdentity(task.job_id, task.attempt, task.index, task.team)


def selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def contest_selector(settings: KubernetesSettings) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_LEVEL_RUN,
        LABEL_CONTEST: label_value(settings.contest),
    }


# -- rendering ---------------------------------------------------------------------------------------


def _security(run_as_user: int | None) -> dict[str, Any]:
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
    return to_argv(spec, EnvPlacement(bridge_dir=Path(BRIDGE_MOUNT) / "sock", results_dir=Path(RESULTS_MOUNT)))


def render_level_job(
    spec: LevelRunSpec, identity: LevelIdentity, settings: KubernetesSettings, *, grace_seconds: float
) -> dict[str, Any]:
    """The ``batch/v1`` Job of one level-run (a plain dictionary, as the API server takes it).

    ``grace_seconds`` is server.yaml's ``budget_grace_seconds``: a pod may run its wall-clock budget
    plus that long (image pull and start included) before Kubernetes stops it. The deadline is the
    pod's, not the Job's, so that a re-run after a disruption gets a full budget; the Job's own
    deadline bounds all its re-runs together.
    """
    if not spec.image:
        raise UsageError("A Kubernetes level-run needs the agent image.")
    labels = identity.labels(settings)
    pod_deadline = int(spec.wallclock_limit + grace_seconds)
    gpus = max(settings.gpus, 1) if spec.gpus else settings.gpus
    agent_cpu = spec.cpus if spec.cpus is not None else (settings.cpus or spec.agent_cpus)
    agent_memory = quantity(spec.memory or settings.memory or spec.agent_memory, "memory")
    agent_resources: dict[str, Any] = {
        "requests": {"cpu": cpu_quantity(agent_cpu - settings.env_cpu), "memory": agent_memory},
        "limits": {"cpu": cpu_quantity(agent_cpu), "memory": agent_memory},
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
        "securityContext": _security(settings.agent_run_as_user),
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
            "requests": {"cpu": cpu_quantity(settings.env_cpu), "memory": settings.env_memory},
            "limits": {"cpu": cpu_quantity(agent_cpu), "memory": settings.env_memory},
        },
        "volumeMounts": [
            {"name": "bridge", "mountPath": BRIDGE_MOUNT},
            {"name": "results", "mountPath": RESULTS_MOUNT},
        ],
        "securityContext": _security(settings.env_run_as_user),
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
            {"name": "agent-out", "emptyDir": {"sizeLimit": settings.agent_out_size}},
        ],
    }
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.priority_class:
        pod_spec["priorityClassName"] = settings.priority_class
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

    def __init__(self, batch: Any, core: Any, networking: Any, namespace: str) -> None:
        self.batch, self.core, self.networking, self.namespace = batch, core, networking, namespace

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

    def follow_log(self, pod: str, container: str) -> Iterator[str]:
        """The container's log from its start, line by line, until the container ends."""
        response = self.core.read_namespaced_pod_log(
            pod, self.namespace, container=container, follow=True, _preload_content=False
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
    return ClusterApi(client.BatchV1Api(api), client.CoreV1Api(api), client.NetworkingV1Api(api), settings.namespace)


def _in_cluster() -> bool:
    import os

    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


# -- one pod of a level-run, seen as a runtime session ---------------------------------------------


def _container_states(pod: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    status = pod.get("status") or {}
    return {c.get("name"): c.get("state") or {} for c in status.get("containerStatuses") or []}


def _disrupted(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions)


def _started_at(pod: Mapping[str, Any]) -> float | None:
    stamp = (pod.get("status") or {}).get("startTime")
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _LogFollower(threading.Thread):
    """Follows one container's log into the results directory, from its first line, until it ends.

    The env container's structured lines become files (progress.json while it runs, every results
    file at its end); other lines are the container's output. Kubernetes serves stdout and stderr as
    one stream, so both ``-stdout.txt`` and ``-stderr.txt`` receive it (the error messages quote the
    ``-stderr.txt`` tail). A broken stream is followed again from the start, rewriting the files.
    """

    def __init__(self, pod_session: PodSession, container: str, outputs: tuple[Path, Path], parse: bool) -> None:
        super().__init__(daemon=True, name=f"log-{pod_session.pod}-{container}")
        self.session, self.container, self.outputs, self.parse = pod_session, container, outputs, parse
        self.ended = threading.Event()
        self.end_record = False

    def run(self) -> None:
        try:
            while not self.session.closed.is_set():
                if self._follow_once():
                    return
                if self.session.closed.wait(self.session.poll):
                    return
        finally:
            self.ended.set()

    def _follow_once(self) -> bool:
        """One pass over the log; True when the container has ended (or the pod is gone)."""
        assembler = structured_log.FileAssembler(self.session.results_dir)
        handles = [open(path, "w", encoding="utf-8") for path in self.outputs]  # noqa: SIM115 - closed below
        try:
            for line in self.session.api.follow_log(self.session.pod, self.container):
                if self.session.closed.is_set():
                    return True  # let go (the server stops): a later follower reads it all again
                record = structured_log.parse(line) if self.parse else None
                if record is None:
                    for handle in handles:
                        handle.write(line + "\n")
                        handle.flush()
                elif record.kind is structured_log.RecordKind.PROGRESS:
                    results.write_json(self.session.results_dir / results.PROGRESS, record.data)
                elif record.kind is structured_log.RecordKind.FILE:
                    assembler.add(record.data)
                elif record.kind is structured_log.RecordKind.END:
                    self.end_record = True
        except Exception as exc:  # noqa: BLE001 - not started yet, a dropped connection: look again
            status = _status(exc)
            if status == 404:
                return True  # the pod is gone: nothing more will come
            if status != 400:  # 400: the container is still waiting to start
                log.debug("following %s/%s: %s", self.session.pod, self.container, exc)
            return False
        finally:
            for handle in handles:
                handle.close()
        pod = self.session.api.read_pod(self.session.pod)
        return pod is None or "terminated" in _container_states(pod).get(self.container, {})


class PodSession:
    """One pod of a level-run as ``contestkit.evaluation`` watches a runtime session.

    A container's exit status is reported once its end is seen *and* its log has been read to the
    end, so the results files are complete when the evaluation summarises them. Kubernetes cannot stop
    one container of a pod: stopping either half deletes the Job (both halves, as the evaluation stops
    both anyway), unless the server is only letting go of the run (``detached``), when nothing is
    stopped and the Job is adopted at the next start.
    """

    def __init__(self, run: KubernetesRun, pod: str) -> None:
        self.run = run
        self.api = run.executor.api
        self.pod = pod
        self.results_dir = run.task.results_dir
        self.poll = run.executor.settings.poll_seconds
        self.closed = threading.Event()
        self.lock = threading.Lock()
        self.exits: dict[str, int] = {}
        self.exit_seen: dict[str, float] = {}
        self.disrupted = False
        self.vanished = False
        self.deadline_exceeded = False
        self.stop_requested = False
        self.started_at: float | None = None
        rd = self.results_dir
        self.followers = {
            ENV_CONTAINER: _LogFollower(
                self, ENV_CONTAINER, (rd / results.REMOTE_STDOUT, rd / results.REMOTE_STDERR), parse=True
            ),
            AGENT_CONTAINER: _LogFollower(
                self, AGENT_CONTAINER, (rd / results.AGENT_STDOUT, rd / results.AGENT_STDERR), parse=False
            ),
        }
        self._poller = threading.Thread(target=self._poll_loop, daemon=True, name=f"pod-{pod}")

    def start(self) -> PodSession:
        for follower in self.followers.values():
            follower.start()
        self._poll_once()
        self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self.closed.wait(self.poll):
            try:
                self._poll_once()
            except Exception:  # noqa: BLE001 - an API hiccup; the next poll looks again
                log.debug("reading pod %s failed", self.pod, exc_info=True)

    def _poll_once(self) -> None:
        pod = self.api.read_pod(self.pod)
        with self.lock:
            if pod is None:
                if self.stop_requested:
                    for name in (ENV_CONTAINER, AGENT_CONTAINER):
                        self.exits.setdefault(name, STOPPED_EXIT)
                elif not self.exits.keys() >= {ENV_CONTAINER, AGENT_CONTAINER}:
                    # Gone without our asking and before both halves ended: deleted from outside,
                    # or replaced after a disruption. Either way this pod's run is over.
                    self.vanished = True
                return
            if self.started_at is None:
                self.started_at = _started_at(pod)
            if _disrupted(pod) and not self.exits.keys() >= {ENV_CONTAINER, AGENT_CONTAINER}:
                self.disrupted = True
            if (pod.get("status") or {}).get("reason") == "DeadlineExceeded":
                self.deadline_exceeded = True
            for name, state in _container_states(pod).items():
                terminated = state.get("terminated")
                if terminated is not None and name in self.followers:
                    self.exits.setdefault(name, int(terminated.get("exitCode", STOPPED_EXIT)))
                    self.exit_seen.setdefault(name, time.monotonic())

    @property
    def interrupted(self) -> bool:
        """This pod's run ended without a result of its own: it was disrupted or vanished."""
        return self.disrupted or self.vanished

    def _exit(self, name: str) -> int | None:
        with self.lock:
            if self.interrupted:
                return -1
            code = self.exits.get(name)
        if code is None:
            return None
        follower = self.followers[name]
        # The log's last lines (the env's files) come a moment after the end; wait for them, within reason.
        waited = time.monotonic() - self.exit_seen.get(name, time.monotonic())
        return code if follower.ended.wait(timeout=0.05) or self.closed.is_set() or waited > LOG_DRAIN else None

    def env_exit(self) -> int | None:
        return self._exit(ENV_CONTAINER)

    def agent_exit(self) -> int | None:
        return self._exit(AGENT_CONTAINER)

    def _stop(self, grace: float) -> None:
        if self.run.detached.is_set():
            return
        with self.lock:
            if self.stop_requested:
                return
            self.stop_requested = True
        self.run.delete(grace)

    def stop_agent(self, grace: float) -> None:
        self._stop(grace)

    def stop_env(self, grace: float) -> None:
        self._stop(grace)

    def wait_logs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for follower in self.followers.values():
            follower.ended.wait(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.closed.set()
        for thread in (*self.followers.values(), self._poller):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=1)


class _NoOutput:
    """The evaluation's live agent-output tail: nothing to show on a server."""

    def pump(self) -> None:
        return None


# -- a level-run and the executor ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterLevel(RunningLevel):
    """A level-run the cluster runs (the scheduler's ``RunningLevel``, plus the attempt and the Job)."""

    attempt: int = 0
    name: str = ""


class KubernetesRun(LevelRun):
    """One level-run's Job: followed to its end (through re-runs after disruptions), cancellable."""

    def __init__(self, executor: KubernetesExecutor, task: LevelTask) -> None:
        super().__init__(task)
        self.executor = executor
        self.identity = identity_of(task)
        self.spec = task.run
        self.name = self.identity.job_name(executor.settings)
        self.detached = threading.Event()
        self.disruptions = 0

    def detach(self) -> None:
        """Let go without stopping anything: the server is stopping, and adopts the Job at its next start."""
        self.detached.set()
        self._cancelled.set()

    def delete(self, grace: float | None = None) -> None:
        self.executor.api.delete_job(self.name, None if grace is None else max(0, int(grace)))

    def follow(self, on_progress: Callable[[Any], None]) -> Any:
        from contestkit.evaluation import (  # deferred: the emulator loads late
            LevelResult,
            summarize_level,
            watch_session,
        )

        rd = self.task.results_dir
        rd.mkdir(parents=True, exist_ok=True)
        started_at = time.time()
        start = time.monotonic()
        events: dict[str, Any] = {}
        session: PodSession | None = None
        try:
            while True:
                pod = self._wait_for_pod()
                if pod is None:
                    events = {"interrupted": True, "env_exit": None, "agent_exit": None}
                    break
                session = PodSession(self, pod).start()
                if session.started_at is not None:  # adopted: the budget started with the pod
                    start = time.monotonic() - max(0.0, time.time() - session.started_at)
                    started_at = session.started_at
                events = watch_session(session, self.spec, rd, start, on_progress, self._cancelled, _NoOutput())
                if not self.detached.is_set():
                    session.wait_logs(timeout=10.0)
                session.close()
                if not session.interrupted or self.cancelled:
                    break
                # Disrupted (drain, eviction, preemption) or deleted from outside: run the level again,
                # not counted as the team's failure, up to disruption_retries times.
                self.disruptions += 1
                if self.disruptions > self.executor.settings.disruption_retries:
                    events["disruption_error"] = (
                        f"The level's pod was disrupted {self.disruptions} times (node drain, eviction or "
                        "preemption); it was not run again."
                    )
                    break
                log.warning("level-run %s was disrupted; it runs again (%s)", self.name, self.disruptions)
                self._reset_results()
                if session.vanished and self.executor.api.read_job(self.name) is None:
                    self.executor.create(self)
                start, started_at = time.monotonic(), time.time()
        finally:
            if session is not None:
                session.close()
            self.executor.forget(self)
            if self.cancelled and not self.detached.is_set():
                self.delete(3)  # cancelled before a pod came, or while one ran: nothing may stay behind
        if self.detached.is_set():
            raise ContestkitError(
                f"The server is stopping; the Kubernetes Job {self.name} keeps running and is adopted "
                "at its next start."
            )
        summary = summarize_level(self.spec, rd, "kubernetes", events, started_at, time.monotonic() - start)
        summary["kubernetes_job"] = self.name
        summary["disruptions"] = self.disruptions
        if session is not None and session.deadline_exceeded and not events.get("interrupted"):
            summary["ok"] = False
            summary["error"] = (
                f"Kubernetes stopped the level: it ran past its wall-clock budget of {self.spec.wallclock_limit:g} s "
                "plus the grace period."
            )
        if events.get("disruption_error"):
            summary["ok"], summary["error"] = False, events["disruption_error"]
        results.write_json(rd / results.SUMMARY, summary)
        if not self.cancelled:
            self.delete()  # the results are in; ttlSecondsAfterFinished is only the backstop
        return LevelResult.from_summary(self.spec.game, self.spec.state or "", rd, summary)

    def _wait_for_pod(self) -> str | None:
        """The Job's live pod (the newest not disrupted), waiting for the Job controller to make it."""
        labels = {"job-name": self.name}
        while not self._cancelled.is_set():
            pods = [
                p
                for p in self.executor.api.list_pods(labels)
                if not _disrupted(p) and not (p.get("metadata") or {}).get("deletionTimestamp")
            ]
            if pods:
                pods.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
                return str(pods[-1]["metadata"]["name"])
            job = self.executor.api.read_job(self.name)
            if job is None:
                self.executor.create(self)  # vanished before its pod came: make it again
            elif _job_ended(job):
                raise ContestkitError(
                    f"The Kubernetes Job {self.name} ended and its pod is gone, so its results are lost; "
                    "restart the job to run the level again."
                )
            self._cancelled.wait(self.executor.settings.poll_seconds)
        return None

    def _reset_results(self) -> None:
        """A re-run starts from an empty results directory, as the level starts from scratch."""
        rd = self.task.results_dir
        for path in sorted(rd.rglob("*"), reverse=True):
            if path.is_file() or path.is_symlink():
                path.unlink()
            elif path.is_dir():
                path.rmdir()


def _job_ended(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions)


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
    ) -> None:
        """``registry``: the contest registry's scheme and the evaluator's account, to resolve tags to digests."""
        self.settings = settings
        self.registry = registry
        self.api = api or connect(settings)
        self.grace_seconds = grace_seconds
        self._runs: dict[str, KubernetesRun] = {}
        self._lock = threading.Lock()
        if settings.manage_network_policy:
            try:
                if self.api.ensure_network_policy(render_network_policy(settings)):
                    log.warning("created the NetworkPolicy %s in %s", NETWORK_POLICY_NAME, settings.namespace)
            except Exception as exc:  # noqa: BLE001 - one sentence for the host, whatever the client raised
                raise ContestkitError(
                    f"Cannot make sure the NetworkPolicy {NETWORK_POLICY_NAME} exists in namespace "
                    f"{settings.namespace} ({exc}); apply `contestkit server manifests` or set "
                    "manage_network_policy: false once it is in place."
                ) from None

    def resolve_image(self, reference: str) -> str:
        """The image pinned by digest: as submitted, or resolved in the contest registry (no pull here).

        The cluster pulls the image itself, so the server only asks the registry which manifest the
        tag names now; every level (and a re-run after a disruption or a restart) then runs that one.
        """
        ref = imageref.parse(reference)
        if ref.digest is not None or self.registry is None:
            return reference
        return str(ref.pinned(resolve_digest(reference, *self.registry)))

    def render(self, run: KubernetesRun) -> dict[str, Any]:
        return render_level_job(run.spec, run.identity, self.settings, grace_seconds=self.grace_seconds)

    def create(self, run: KubernetesRun) -> None:
        try:
            self.api.create_job(self.render(run))
        except Exception as exc:
            if _status(exc) == 409:
                return  # made a moment ago (by us, or a server that ran before): it is the same level-run
            raise ContestkitError(f"Kubernetes refused the Job {run.name}: {_reason(exc)}.") from None

    def _run(self, task: LevelTask) -> KubernetesRun:
        spec = task.run
        if spec.image is None or imageref.parse(spec.image).digest is None:
            raise ContestkitError(
                f"The image {spec.image} is not pinned by digest; the cluster must run the very image that was "
                "submitted (submit with `contestkit submit`, which pins it)."
            )
        run = KubernetesRun(self, task)
        with self._lock:
            self._runs[run.name] = run
        return run

    def start(self, task: LevelTask) -> KubernetesRun:
        run = self._run(task)
        existing = self.api.read_job(run.name)
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            self._wait_gone(run.name)
        self.create(run)
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


def _reason(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message") if body else None
    except (TypeError, ValueError):
        message = None
    return str(message or getattr(exc, "reason", None) or exc)


def executor_from_config(config: Any, *, api: ClusterApi | None = None) -> KubernetesExecutor:
    """The executor server.yaml configures with ``executor: kubernetes`` and its ``kubernetes:`` mapping."""
    settings = KubernetesSettings.from_mapping(getattr(config, "kubernetes", None) or {})
    password = getattr(config, "evaluator_registry_password", "")
    account = (config.evaluator_username, password) if password else None
    return KubernetesExecutor(
        settings, api=api, grace_seconds=config.budget_grace_seconds, registry=(config.registry_scheme, account)
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


__all__ = [
    "ClusterApi",
    "ClusterLevel",
    "KubernetesExecutor",
    "KubernetesRun",
    "KubernetesSettings",
    "LevelIdentity",
    "PodSession",
    "connect",
    "executor_from_config",
    "render_level_job",
    "render_network_policy",
]
