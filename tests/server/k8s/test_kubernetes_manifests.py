"""Every Kubernetes object contestkit renders, validated against the official OpenAPI schemas.

``kubernetes-validate`` ships the schemas of each Kubernetes release; the objects are checked in
strict mode (unknown fields refused) for 1.30, the oldest release the executor supports, and for the
newest the package knows. No API server is involved: none can run here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from contestkit.runs.levelrun import LevelRunSpec
from contestkit.runtime import kubernetes as kr
from contestkit.server.deployment import manifests
from contestkit.server.executors import kubernetes as kx
from contestkit.server.executors import network_policy
from contestkit.server.executors.kubernetes_settings import KubernetesSettings

VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
IMAGE = "registry.example.org:5000/team-rocket/agent@sha256:" + "b" * 64


def _spec(tmp_path: Path, **changes: object) -> LevelRunSpec:
    spec = LevelRunSpec(game="Airstriker-Genesis", state="Level1", seed=3, image=IMAGE)
    return dataclasses.replace(spec, **changes)


def _settings(**changes: object) -> KubernetesSettings:
    return KubernetesSettings.from_mapping({"remote_env_image": "registry.example.org:5000/ck/remote-env:1", **changes})


IDENTITY = kr.LevelIdentity(job_id=4448, attempt=2, index=4, team="Team Rocket!")

JOB_VARIANTS = {
    "contest defaults": ({}, {}),
    "gpu agent": (
        {"gpus": True},
        {"node_selector": {"nvidia.com/gpu.present": "true"},
         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    ),
    "gpu count from settings": ({}, {"gpus": 2}),
    "recording, own cpu and memory, env vars": (
        {"record": True, "cpus": 4.0, "memory": "16g", "env_vars": {"OMP_NUM_THREADS": "4"}}, {}
    ),
    "non-root, pull secrets, priority": (
        {}, {"agent_run_as_user": 1000, "env_run_as_user": 1000, "image_pull_secrets": ["a", "b"],
             "priority_class": "contest-level-runs", "ttl_seconds_after_finished": 3600}
    ),
    "no seed": ({"seed": None}, {"image_pull_secrets": []}),
}  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(JOB_VARIANTS))
def test_every_job_variant_validates(tmp_path: Path, variant: str, version: str) -> None:
    spec_changes, settings_changes = JOB_VARIANTS[variant]
    job = kr.render_level_job(
        _spec(tmp_path, **spec_changes), IDENTITY, _settings(**settings_changes), grace_seconds=120
    )
    kubernetes_validate.validate(job, version, strict=True)


def test_the_validator_refuses_what_an_api_server_would(tmp_path: Path) -> None:
    job = kr.render_level_job(_spec(tmp_path), IDENTITY, _settings(), grace_seconds=120)
    job["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.30.0", strict=True)


def test_the_job_is_shaped_as_the_contest_needs(tmp_path: Path) -> None:
    settings = _settings()
    job = kr.render_level_job(_spec(tmp_path), IDENTITY, settings, grace_seconds=120)
    pod = job["spec"]["template"]["spec"]
    env, agent = pod["containers"]
    assert job["metadata"]["name"] == "ck-j4448-a2-l4"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[kr.LABEL_JOB] == "4448" and labels[kr.LABEL_ATTEMPT] == "2" and labels[kr.LABEL_LEVEL] == "4"
    assert labels[kr.LABEL_TEAM] == "Team-Rocket"
    assert job["spec"]["template"]["metadata"]["annotations"] == {kr.SAFE_TO_EVICT: "false"}
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    # budget + grace + the scheduling/pull allowance, per pod: a re-run gets a whole budget
    assert pod["activeDeadlineSeconds"] == 43_320 + 600
    assert job["spec"]["activeDeadlineSeconds"] == (43_320 + 600) * 3
    assert job["spec"]["backoffLimit"] == 0
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert {r["onExitCodes"]["containerName"] for r in rules[1:]} == {"agent", "remote-env"}
    assert all(r["action"] == "FailJob" for r in rules[1:])
    bridge = next(v for v in pod["volumes"] if v["name"] == "bridge")
    assert bridge["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert {"name": "bridge", "mountPath": "/root/compo/tmp"} in agent["volumeMounts"]
    assert {"name": "bridge", "mountPath": "/bridge"} in env["volumeMounts"] and "/bridge/sock" in env["args"]
    for container in (env, agent):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert agent["image"] == IMAGE
    assert agent["resources"]["limits"] == {"cpu": "6000m", "memory": "56Gi", "ephemeral-storage": "20Gi"}
    assert env["resources"]["limits"]["ephemeral-storage"] == "4Gi"
    # Our own env image runs as a non-root user (tests/server/k8s/test_kubernetes_pod_on_docker.py runs
    # it so); the team's agent keeps its image's user (2018 images are root).
    assert env["securityContext"]["runAsUser"] == 1000 and env["securityContext"]["runAsNonRoot"] is True
    assert "runAsUser" not in agent["securityContext"]
    # The pod requests the contest machine's 6 cores in all: the env's share comes out of the agent's.
    total = sum(int(c["resources"]["requests"]["cpu"].rstrip("m")) for c in (env, agent))
    assert total == 6000
    assert env["command"] == ["python", "-m", "contestkit.runs.structured_log"]
    assert env["args"][:2] == ["--game", "Airstriker-Genesis"] and "--results-dir" in env["args"]


def test_the_network_policy_covers_every_level_run_pod(tmp_path: Path) -> None:
    settings = _settings()
    policy = kr.render_network_policy(settings)
    job = kr.render_level_job(_spec(tmp_path), IDENTITY, settings, grace_seconds=120)
    selected = policy["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]  # no rule: nothing allowed
    for version in VERSIONS:
        kubernetes_validate.validate(policy, version, strict=True)


def _options() -> manifests.DeploymentOptions:
    return manifests.DeploymentOptions(
        registry="registry.example.org:5000", levels_csv="game,state\nAirstriker-Genesis,Level1\n",
        storage_class="fast-ssd", postgres_password="not-a-real-password",
    )  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
def test_the_server_manifests_validate(version: str) -> None:
    documents = manifests.render_manifests(_options())
    kinds = [d["kind"] for d in documents]
    for kind in ("Namespace", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Secret", "ConfigMap",
                 "PersistentVolumeClaim", "Deployment", "StatefulSet", "Service"):  # fmt: skip
        assert kind in kinds, kind
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


# The RBAC right each client call needs (a Kubernetes fact: the call's verb on its resource).
RIGHTS = {
    "create_namespaced_job": ("batch", "jobs", "create"),
    "read_namespaced_job": ("batch", "jobs", "get"),
    "list_namespaced_job": ("batch", "jobs", "list"),
    "delete_namespaced_job": ("batch", "jobs", "delete"),
    "read_namespaced_pod": ("", "pods", "get"),
    "create_namespaced_pod": ("", "pods", "create"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
    "read_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "get"),
    "create_namespaced_network_policy": ("networking.k8s.io", "networkpolicies", "create"),
}


def test_the_role_grants_exactly_what_the_executor_calls(cluster, make_task, env_lines) -> None:
    """Every call a level-run's whole life makes (the NetworkPolicy probe at start, start, follow, logs,
    record, reconcile, adopt) is granted, and nothing else is: both directions, from the calls the FAKE
    API counted."""
    from tests.support.k8s import Follow
    from tests.support.polling import wait_until

    settings = manifests.executor_settings(_options())
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    policy = next(d for d in manifests.render_manifests(_options()) if d["kind"] == "NetworkPolicy")
    cluster.policies[policy["metadata"]["name"]] = policy  # applied with the manifests, not by the server
    executor = kx.KubernetesExecutor(dataclasses.replace(settings, poll_seconds=0.05), api=api, grace_seconds=5.0)
    wait_until(lambda: executor.network.state is not network_policy.Enforcement.CHECKING, timeout=10)
    assert executor.held() is None and not cluster.pods, "the probe found the policy enforced and went"
    task = make_task()
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.start(pod)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[1.0], timesteps=1000)
    cluster.print(pod, "remote-env", *lines)
    cluster.end(pod, "remote-env", 0)
    cluster.end(pod, "agent", 0)
    assert follow.join().ok
    assert executor.running() and executor.adopt(task) is not None  # reconcile and a restart's adoption
    run.recorded()
    called = {RIGHTS[name] for name in cluster.requests}
    granted = {(g, r, v) for rule in manifests.ROLE_RULES for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert called == granted
    role = next(d for d in manifests.render_manifests(_options()) if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "contestkit" and role["rules"] == manifests.ROLE_RULES


def test_operator_grade_security(tmp_path: Path) -> None:
    documents = {d["kind"] + "/" + d["metadata"]["name"]: d for d in manifests.render_manifests(_options())}
    namespace = documents["Namespace/contestkit"]["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "baseline"
    assert namespace["pod-security.kubernetes.io/warn"] == namespace["pod-security.kubernetes.io/audit"] == "restricted"
    postgres = documents["StatefulSet/contestkit-postgres"]["spec"]["template"]["spec"]
    assert postgres["securityContext"]["runAsNonRoot"] is True and postgres["securityContext"]["runAsUser"] == 999
    assert postgres["containers"][0]["resources"]["limits"]["memory"]
    server = documents["Deployment/contestkit-server"]["spec"]["template"]["spec"]
    assert server["imagePullSecrets"] == [{"name": "contest-registry"}]
    assert "ephemeral-storage" in server["containers"][0]["resources"]["limits"]
    assert server["initContainers"][0]["command"][-1] == manifests.render_init_script(_options())


def test_the_server_settings_in_the_config_map_are_valid() -> None:
    config = next(d for d in manifests.render_manifests(_options()) if d["kind"] == "ConfigMap")
    extra = yaml.safe_load(config["data"]["server-extra.yaml"])
    assert extra["executor"] == "kubernetes"
    settings = KubernetesSettings.from_mapping(extra["kubernetes"])
    assert settings.namespace == "contestkit" and settings.image_pull_secrets == ["contest-registry"]
    secret = next(d for d in manifests.render_manifests(_options()) if d["kind"] == "Secret")
    assert secret["stringData"]["url"].startswith("postgresql+psycopg://contestkit:not-a-real-password@")


def test_manifests_command_prints_a_yaml_stream(cli, tmp_path: Path) -> None:
    levels = tmp_path / "levels.csv"
    levels.write_text("\ufeffgame,state\nAirstriker-Genesis,Level1\n", encoding="utf-8")
    done = cli("server", "manifests", "--registry", "registry.example.org:5000", "--levels", str(levels),
               "--namespace", "contest-2018")  # fmt: skip
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert {d["metadata"].get("namespace", d["metadata"]["name"]) for d in documents} == {"contest-2018"}
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
    missing = cli("server", "manifests", "--registry", "r:5000", "--levels", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "Cannot read the level list" in missing.stderr


def _run_init(tmp_path: Path, options: manifests.DeploymentOptions) -> str:
    """The Deployment's init container's script, run for real by sh (paths moved under tmp_path, SQLite),
    with the ConfigMap's files as ``options`` render them; returns the data directory's server.yaml."""
    import os
    import subprocess

    documents = {d["kind"]: d for d in manifests.render_manifests(options)}
    script = documents["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]["command"][-1]
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir(exist_ok=True)
    config.mkdir(exist_ok=True)
    for name, text in documents["ConfigMap"]["data"].items():
        (config / name).write_text(text)
    script = script.replace(manifests.DATA_MOUNT, str(data)).replace(manifests.CONFIG_MOUNT, str(config))
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'contest.db'}"}
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return (data / "server.yaml").read_text()


def test_the_init_script_writes_one_executor_and_valid_settings(tmp_path: Path) -> None:
    from contestkit.server.config import load_config

    text = _run_init(tmp_path, _options())
    assert [line for line in text.splitlines() if line.startswith("executor:")] == ["executor: kubernetes"]
    assert [line for line in text.splitlines() if line.startswith("kubernetes:")] == ["kubernetes:"]
    assert load_config(tmp_path / "data").executor == "kubernetes"


def test_a_changed_config_map_takes_effect_on_restart_and_keeps_the_data(tmp_path: Path) -> None:
    """A restart runs the init script again: the ConfigMap's keys and level set replace the data
    directory's; the rest of server.yaml, the database and the results stay as they were."""
    from contestkit.server.config import load_config

    first = _run_init(tmp_path, _options())
    data = tmp_path / "data"
    database = (tmp_path / "contest.db").read_bytes()
    result = data / "jobs" / "1" / "attempt-1" / "00-Airstriker-Genesis-Level1" / "summary.json"
    result.parent.mkdir(parents=True)
    result.write_text('{"score": 1.0}')
    changed = dataclasses.replace(
        _options(), parallel_jobs=40, priority_class="ck-eval",
        levels_csv="game,state\nAirstriker-Genesis,Level1\nAirstriker-Genesis,Level2\n",
    )  # fmt: skip
    second = _run_init(tmp_path, changed)
    config = load_config(data)
    assert config.parallel_jobs == 40 and config.kubernetes["priority_class"] == "ck-eval"
    assert [level.state for level in config.levels()] == ["Level1", "Level2"]
    for key in ("executor:", "kubernetes:", "parallel_jobs:"):
        assert sum(line.startswith(key) for line in second.splitlines()) == 1, key
    ours = ("executor:", "kubernetes:", "parallel_jobs:", "  ", "- ", "# From the ConfigMap")
    kept = [line for line in first.splitlines() if not line.startswith(ours)]
    assert kept == [line for line in second.splitlines() if not line.startswith(ours)], "the host's lines stay"
    assert (tmp_path / "contest.db").read_bytes() == database and result.read_text() == '{"score": 1.0}'
    assert _run_init(tmp_path, changed) == second, "a restart without a change changes nothing"


def test_manifests_keep_the_postgres_password_of_the_first_run(cli, tmp_path: Path) -> None:
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nAirstriker-Genesis,Level1\n", encoding="utf-8")
    password_file = tmp_path / "secrets" / "postgres-password"
    args = ("server", "manifests", "--registry", "r:5000", "--levels", str(levels),
            "--postgres-password-file", str(password_file))  # fmt: skip
    first, second = cli(*args), cli(*args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout, "a re-apply must not change the Secret"
    assert password_file.stat().st_mode & 0o777 == 0o600
    secret = next(d for d in yaml.safe_load_all(first.stdout) if d["kind"] == "Secret")
    assert secret["stringData"]["password"] == password_file.read_text().strip()
    password_file.write_text("with space\n")
    bad = cli(*args)
    assert bad.returncode != 0 and "without spaces" in bad.stderr and "Traceback" not in bad.stderr


def _opted_in() -> manifests.DeploymentOptions:
    return manifests.checked(
        dataclasses.replace(_options(), quota_cpu="600", quota_memory="6t", quota_pods=120, priority_class="ck-eval")
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_the_opt_in_quota_and_priority_class_validate(version: str) -> None:
    documents = manifests.render_manifests(_opted_in())
    kinds = [d["kind"] for d in documents]
    assert kinds.count("ResourceQuota") == 1 and kinds.count("PriorityClass") == 1
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    plain = [d["kind"] for d in manifests.render_manifests(_options())]
    assert "ResourceQuota" not in plain and "PriorityClass" not in plain, "both are opt-in"


def test_the_quota_and_priority_class_say_what_was_asked() -> None:
    documents = {d["kind"]: d for d in manifests.render_manifests(_opted_in())}
    quota = documents["ResourceQuota"]
    assert quota["metadata"]["namespace"] == "contestkit"
    assert quota["spec"]["hard"] == {"requests.cpu": "600", "requests.memory": "6Ti", "pods": "120"}
    priority = documents["PriorityClass"]
    assert "namespace" not in priority["metadata"] and priority["metadata"]["name"] == "ck-eval"
    assert priority["value"] == manifests.PRIORITY_VALUE and priority["globalDefault"] is False
    # A namespace with a requests quota refuses any container without requests: every one has them.
    for kind in ("Deployment", "StatefulSet"):
        pod = documents[kind]["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), (kind, container["name"])
    # The level-run pods get the class through server.yaml's kubernetes settings.
    extra = yaml.safe_load(documents["ConfigMap"]["data"]["server-extra.yaml"])
    settings = KubernetesSettings.from_mapping(extra["kubernetes"])
    job = kr.render_level_job(_spec(Path(".")), IDENTITY, settings, grace_seconds=120)
    assert job["spec"]["template"]["spec"]["priorityClassName"] == "ck-eval"


def test_manifests_command_takes_the_opt_in_flags(cli, tmp_path: Path) -> None:
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nAirstriker-Genesis,Level1\n", encoding="utf-8")
    base = ("server", "manifests", "--registry", "r:5000", "--levels", str(levels))
    done = cli(*base, "--quota-cpu", "96", "--quota-pods", "20", "--priority-class", "contest-eval")
    assert done.returncode == 0, done.stderr
    documents = {d["kind"]: d for d in yaml.safe_load_all(done.stdout)}
    assert documents["ResourceQuota"]["spec"]["hard"] == {"requests.cpu": "96", "pods": "20"}
    assert documents["PriorityClass"]["metadata"]["name"] == "contest-eval"
    bad = cli(*base, "--quota-cpu", "lots")
    assert bad.returncode == 2 and "is not a CPU quantity" in bad.stderr and "Traceback" not in bad.stderr
