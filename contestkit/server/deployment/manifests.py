"""Everything a host applies to run the contest server itself in a Kubernetes cluster.

``contestkit server manifests`` prints these objects as one YAML stream (``kubectl apply -f -``). Each
exists for one reason:

* ``Namespace``: the contest's own, so its Role grants nothing elsewhere;
* ``ServiceAccount`` + ``Role`` + ``RoleBinding``: the server creates, follows and deletes the
  level-run Jobs, reads their pods and pod logs, and makes sure the NetworkPolicy exists, in this
  namespace only (:data:`ROLE_RULES`, the calls ``runtime.kubernetes.ClusterApi`` makes);
* ``NetworkPolicy``: no ingress or egress at all for level-run pods (the agent gets no network; the
  results come back through the pod log);
* ``Secret``: the database URL (and PostgreSQL's password), never in a ConfigMap or the image;
* ``ConfigMap``: the level set and server.yaml's ``executor``/``kubernetes`` settings;
* ``PersistentVolumeClaim``: the data directory (server.yaml, results of every level-run);
* ``Deployment`` (one replica, ``Recreate``: one server per data directory) and its ``Service``;
* PostgreSQL as a ``StatefulSet`` with its own volume and a ``Service``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contestkit import __version__
from contestkit.runs import levelrun
from contestkit.runtime.kubernetes import LABEL_MANAGED_BY, MANAGED_BY, label_value, render_network_policy
from contestkit.server.config import DEFAULT_PORT, ExecutorKind
from contestkit.server.executors.kubernetes_settings import KubernetesSettings

SERVER_NAME = "contestkit-server"
POSTGRES_NAME = "contestkit-postgres"
DATABASE_SECRET = "contestkit-database"
CONFIG_MAP = "contestkit-config"
DATA_CLAIM = "contestkit-data"
DATA_MOUNT = "/data"
CONFIG_MOUNT = "/config"
PORT = DEFAULT_PORT

# What the server asks of the API server (contestkit.runtime.kubernetes.ClusterApi), and no more: no
# watch (pods are listed by label once per poll), no NetworkPolicy rights (the manifests ship the
# policy and set manage_network_policy: false); pods create and delete for the NetworkPolicy probe
# (server/executors/network_policy.py). tests/server/k8s compares this with the calls made.
ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
# Pod Security for the namespace: level-run agents of 2018 images run as root, so ``baseline`` is
# enforced; ``restricted`` is warned and audited so that a host sees what stops the stricter level.
POD_SECURITY = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


#: The level-run PriorityClass's value (``--priority-value``): above the default 0 of ordinary
#: workloads, far below the system classes (2,000,000,000 and up).
PRIORITY_VALUE = 100_000


@dataclass(frozen=True)
class DeploymentOptions:
    """What differs from one contest's cluster to another's."""

    registry: str  # HOST:PORT teams push to and the cluster pulls from
    levels_csv: str  # the level set's text (header game,state)
    server_image: str = f"contestkit/server:{__version__}"
    remote_env_image: str = f"contestkit/remote-env:{__version__}"
    namespace: str = "contestkit"
    storage_class: str | None = None
    data_size: str = "200Gi"
    database_size: str = "20Gi"
    postgres_image: str = "postgres:16"
    # Given (``--postgres-password-file``) or the one the Secret already holds: a re-apply must not
    # change it (PostgreSQL keeps the password of its first start). A new one only for a first apply.
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    image_pull_secret: str = "contest-registry"
    service_type: str = "ClusterIP"
    timestep_limit: int = levelrun.TIMESTEP_LIMIT  # the contest's budgets, written once in levelrun
    wallclock_limit: float = levelrun.WALLCLOCK_LIMIT
    parallel_jobs: int = 100
    parallel_levels: int = 5
    # Opt-in: a ResourceQuota on the namespace (None: no such limit), and a PriorityClass for level-runs.
    quota_cpu: str | None = None  # requests.cpu, e.g. 600 (cores) or 600000m
    quota_memory: str | None = None  # requests.memory, e.g. 6Ti
    quota_pods: int | None = None
    priority_class: str | None = None
    priority_value: int = PRIORITY_VALUE


QUOTA_NAME = "contestkit-quota"
_CPU = re.compile(r"^\d+(\.\d+)?m?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def checked(options: DeploymentOptions) -> DeploymentOptions:
    """``options`` with the quota's sizes as Kubernetes writes them; one sentence for a value it refuses."""
    from contestkit.errors import UsageError
    from contestkit.runtime.kubernetes import quantity

    if options.quota_cpu is not None and not _CPU.match(options.quota_cpu):
        raise UsageError(f"--quota-cpu '{options.quota_cpu}' is not a CPU quantity; write e.g. 600 or 600000m.")
    if options.quota_pods is not None and options.quota_pods < 1:
        raise UsageError("--quota-pods must be at least 1.")
    if options.priority_class is not None and not _NAME.match(options.priority_class):
        raise UsageError(
            f"--priority-class '{options.priority_class}' is not a Kubernetes name "
            "(lower-case letters, digits, '-', '.')."
        )
    if not -2_147_483_648 <= options.priority_value <= 1_000_000_000:
        raise UsageError("--priority-value must be at most 1000000000 (higher values are the cluster's own).")
    memory = quantity(options.quota_memory, "--quota-memory") if options.quota_memory is not None else None
    return dataclasses.replace(options, quota_memory=memory)


def render_quota(options: DeploymentOptions) -> dict[str, Any] | None:
    """The namespace's ResourceQuota, or None when no limit was asked for.

    Requests only (and the pod count): the server's own pod has no CPU limit, and a quota on limits
    would refuse every pod without one. Every container rendered here requests CPU and memory, as a
    namespace with such a quota requires.
    """
    hard = {
        key: value
        for key, value in (
            ("requests.cpu", options.quota_cpu),
            ("requests.memory", options.quota_memory),
            ("pods", None if options.quota_pods is None else str(options.quota_pods)),
        )
        if value is not None
    }
    if not hard:
        return None
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta(QUOTA_NAME, options, "quota"),
            "spec": {"hard": hard}}  # fmt: skip


def render_priority_class(options: DeploymentOptions) -> dict[str, Any] | None:
    """The level-runs' PriorityClass (cluster-wide, so no namespace), or None when not asked for.

    Level-runs are 12-hour pods a preemption would cut short: a priority above the cluster's default
    keeps other work from preempting them. ``preemptionPolicy: Never``: they wait for room rather
    than evict anyone else's pods.
    """
    if options.priority_class is None:
        return None
    metadata = _meta(options.priority_class, options, "level-run")
    del metadata["namespace"]
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": metadata,
        "value": options.priority_value,
        "globalDefault": False,
        "preemptionPolicy": "Never",
        "description": "contestkit level-runs: not preempted by lower-priority work, never preempting it.",
    }


def postgres_password(path: Path) -> str:
    """PostgreSQL's password from ``path``, made there (mode 600) on the first run: re-applying the
    manifests then keeps the password PostgreSQL was initialised with."""
    from contestkit.errors import UsageError

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
    try:
        password = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"Cannot read the PostgreSQL password file {path}: {exc.strerror}.") from None
    if not password or any(c in password for c in "@/:?# "):
        raise UsageError(
            f"{path} must hold one password without spaces or any of @/:?# (it goes into the database URL)."
        )
    return password


def _meta(name: str, options: DeploymentOptions, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace,
        "labels": {
            LABEL_MANAGED_BY: MANAGED_BY,
            "app.kubernetes.io/name": label_value(name),
            "app.kubernetes.io/component": component,
        },  # fmt: skip
    }


def _restricted(user: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": user,
        "runAsGroup": user,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def executor_settings(options: DeploymentOptions) -> KubernetesSettings:
    return KubernetesSettings(
        remote_env_image=options.remote_env_image,
        namespace=options.namespace,
        image_pull_secrets=[options.image_pull_secret],
        manage_network_policy=False,  # shipped below, so the server needs no right to create it
        priority_class=options.priority_class,
    )


def server_yaml_extra(options: DeploymentOptions) -> str:
    """The server.yaml lines that make the server run level-runs as Jobs in this namespace."""
    settings = executor_settings(options)
    document: dict[str, Any] = {
        "executor": ExecutorKind.KUBERNETES.value,
        "parallel_jobs": options.parallel_jobs,
        "kubernetes": {
            "remote_env_image": settings.remote_env_image,
            "namespace": settings.namespace,
            "image_pull_secrets": list(settings.image_pull_secrets),
            "manage_network_policy": settings.manage_network_policy,
        },
    }
    if settings.priority_class:
        document["kubernetes"]["priority_class"] = settings.priority_class
    return yaml.safe_dump(document, sort_keys=False)


CONFIG_MARK = f"# From the ConfigMap {CONFIG_MAP}, replaced at every start (edit the ConfigMap, not these lines):"


def render_init_script(options: DeploymentOptions) -> str:
    """The server pod's init container: ``server init`` on the first start, and on *every* start the
    ConfigMap's settings and level set copied over the data directory's, so a changed ConfigMap takes
    effect at the next restart. Only the keys the ConfigMap sets are replaced (each top-level key with
    its indented lines, wherever it is); the rest of server.yaml, the database and the results stay."""
    keys = "|".join(yaml.safe_load(server_yaml_extra(options)))
    data, config = DATA_MOUNT, CONFIG_MOUNT
    return (
        "set -e\n"
        f"test -f {data}/server.yaml || contestkit server init --data-dir {data} "
        f"--registry {options.registry} --levels {config}/levels.csv "
        f"--timestep-limit {options.timestep_limit} --wallclock-limit {options.wallclock_limit:g} "
        f'--database-url "$DATABASE_URL" --no-pull --parallel-levels {options.parallel_levels}\n'
        f"cp {config}/levels.csv {data}/levels.csv\n"
        f"awk '/^# From the ConfigMap / {{next}} /^({keys}):/ {{skip=1; next}} skip && /^[ \\t-]/ {{next}} "
        f"{{skip=0; print}}' {data}/server.yaml > {data}/server.yaml.new\n"
        f"{{ echo '{CONFIG_MARK}'; cat {config}/server-extra.yaml; }} >> {data}/server.yaml.new\n"
        f"mv {data}/server.yaml.new {data}/server.yaml\n"
    )


def render_manifests(options: DeploymentOptions) -> list[dict[str, Any]]:
    """Every object, in the order ``kubectl apply`` needs them."""
    ns = options.namespace
    database_url = (
        f"postgresql+psycopg://contestkit:{options.postgres_password}@{POSTGRES_NAME}.{ns}.svc:5432/contestkit"
    )
    server_labels = {"app.kubernetes.io/name": SERVER_NAME}
    postgres_labels = {"app.kubernetes.io/name": POSTGRES_NAME}
    init_script = render_init_script(options)
    database_env = {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "url"}}}
    server_pod = {
        "serviceAccountName": SERVER_NAME,
        "imagePullSecrets": [{"name": options.image_pull_secret}],  # the server's image is in the private registry
        "securityContext": {"fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [
            {
                "name": "init-data-dir",
                "image": options.server_image,
                "command": ["sh", "-c", init_script],
                "env": [database_env],
                "resources": {  # requests on every container: a namespace with a ResourceQuota requires them
                    "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
                    "limits": {"memory": "1Gi", "ephemeral-storage": "1Gi"},
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_MOUNT},
                    {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                ],
                "securityContext": _restricted(1000),
            }
        ],
        "containers": [
            {
                "name": "server",
                "image": options.server_image,
                "command": [
                    "contestkit",
                    "server",
                    "run",
                    "--data-dir",
                    DATA_MOUNT,
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(PORT),
                ],  # fmt: skip
                "ports": [{"name": "http", "containerPort": PORT}],
                # The server is the Deployment, not its pod: a new pod recovers and adopts its Jobs.
                "env": [{"name": "CONTESTKIT_INSTANCE", "value": SERVER_NAME}],
                "readinessProbe": {"httpGet": {"path": "/openapi.json", "port": "http"}, "periodSeconds": 10},
                "livenessProbe": {
                    "httpGet": {"path": "/openapi.json", "port": "http"},
                    "periodSeconds": 30,
                    "failureThreshold": 5,
                },
                "resources": {
                    "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"},
                    "limits": {"memory": "8Gi", "ephemeral-storage": "4Gi"},
                },
                "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}],
                "securityContext": _restricted(1000),
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": DATA_CLAIM}},
            {"name": "config", "configMap": {"name": CONFIG_MAP}},
        ],
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": options.data_size}},
    }
    if options.storage_class:
        claim_spec["storageClassName"] = options.storage_class
    postgres_claim: dict[str, Any] = {
        "metadata": {"name": "pgdata"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": options.database_size}}},
    }
    if options.storage_class:
        postgres_claim["spec"]["storageClassName"] = options.storage_class
    optional = [document for document in (render_quota(options), render_priority_class(options)) if document]
    return [
        *[d for d in optional if d["kind"] == "PriorityClass"],
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {LABEL_MANAGED_BY: MANAGED_BY, **POD_SECURITY}},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVER_NAME, options, "server")},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(SERVER_NAME, options, "server"),
            "rules": ROLE_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(SERVER_NAME, options, "server"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SERVER_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": SERVER_NAME, "namespace": ns}],
        },
        *[d for d in optional if d["kind"] == "ResourceQuota"],
        render_network_policy(executor_settings(options)),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _meta(DATABASE_SECRET, options, "database"),
            "type": "Opaque",
            "stringData": {"url": database_url, "password": options.postgres_password},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(CONFIG_MAP, options, "server"),
            "data": {"levels.csv": options.levels_csv, "server-extra.yaml": server_yaml_extra(options)},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": _meta(DATA_CLAIM, options, "server"),
            "spec": claim_spec,
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(POSTGRES_NAME, options, "database"),
            "spec": {"selector": postgres_labels, "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta(POSTGRES_NAME, options, "database"),
            "spec": {
                "serviceName": POSTGRES_NAME,
                "replicas": 1,
                "selector": {"matchLabels": postgres_labels},
                "template": {
                    "metadata": {"labels": postgres_labels},
                    "spec": {
                        # The image's own postgres user (999), never root; its data volume is group 999.
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 999,
                            "runAsGroup": 999,
                            "fsGroup": 999,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "postgres",
                                "image": options.postgres_image,
                                "env": [
                                    {"name": "POSTGRES_USER", "value": "contestkit"},
                                    {"name": "POSTGRES_DB", "value": "contestkit"},
                                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                                    {
                                        "name": "POSTGRES_PASSWORD",
                                        "valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "password"}},
                                    },
                                ],
                                "ports": [{"name": "postgres", "containerPort": 5432}],
                                "readinessProbe": {
                                    "exec": {"command": ["pg_isready", "-U", "contestkit"]},
                                    "periodSeconds": 10,
                                },
                                "resources": {
                                    "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                                    "limits": {"memory": "4Gi", "ephemeral-storage": "4Gi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [
                                    {"name": "pgdata", "mountPath": "/var/lib/postgresql/data"},
                                    {"name": "run", "mountPath": "/var/run/postgresql"},
                                ],
                            }
                        ],
                        "volumes": [{"name": "run", "emptyDir": {"sizeLimit": "64Mi"}}],
                    },
                },
                "volumeClaimTemplates": [postgres_claim],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(SERVER_NAME, options, "server"),
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # never two servers on one data directory
                "selector": {"matchLabels": server_labels},
                "template": {"metadata": {"labels": server_labels}, "spec": server_pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(SERVER_NAME, options, "server"),
            "spec": {
                "type": options.service_type,
                "selector": server_labels,
                "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            },
        },
    ]


def to_yaml(documents: list[dict[str, Any]]) -> str:
    header = (
        "# contestkit server on Kubernetes: `contestkit server manifests ... | kubectl apply -f -`.\n"
        "# The Secret holds a freshly generated database password: keep this output private.\n"
    )
    return header + yaml.safe_dump_all(documents, sort_keys=False)
