"""server.yaml's ``kubernetes:`` mapping: how level-runs become Jobs, read by the strict reader.

Why its own module: the settings are read by the server's configuration (at start, to refuse a bad
file before anything runs), the Kubernetes runtime, the manifests and the executor; none of them
should have to import the executor to know what a setting means or what its default is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contestkit import yamlconfig
from contestkit.errors import UsageError
from contestkit.runtime.kubernetes import quantity


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
