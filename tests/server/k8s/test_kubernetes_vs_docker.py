"""Same level-run, both executors: one spec started on the real Docker engine and rendered as a Job.

The Docker side is real (the toolkit's images, containers created and started by the Docker runtime
and inspected through the engine); the Kubernetes side is the Job the executor would create (no
cluster can run here). The two are compared point by point. And the env program's structured log is
checked for real: the env program runs under ``python -m contestkit.runs.structured_log`` against the
bundled agent, and the files rebuilt from its stdout equal the files it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contestkit.runs import results, structured_log
from contestkit.runs.levelrun import EnvPlacement, LevelRunSpec, to_argv
from contestkit.runtime import docker as docker_runtime
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors.kubernetes_settings import KubernetesSettings

PLACEMENT_FLAGS = {"--rom-dir", "--chown", "--bridge-dir", "--results-dir"}


class _Inspecting:
    """The real engine's API, inspecting each container just before it starts."""

    def __init__(self, api: Any) -> None:
        self._api = api
        self.inspected: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}

    def start(self, container: str) -> Any:
        details = self._api.inspect_container(container)
        self.inspected[container] = details
        for mount in details["Mounts"]:
            if mount.get("Type") == "volume":
                self.volumes[mount["Name"]] = self._api.inspect_volume(mount["Name"])
        return self._api.start(container)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


def _without_placement(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in PLACEMENT_FLAGS:
            skip = True
        else:
            out.append(arg)
    return out


@pytest.mark.docker
@pytest.mark.parametrize("gpus", [False, True])
def test_one_spec_on_docker_and_as_a_job(tmp_path: Path, docker_api: Any, toolkit_images: dict, gpus: bool) -> None:
    spec = LevelRunSpec(
        game="Airstriker-Genesis",
        state="Level1",
        timestep_limit=4321,
        wallclock_limit=600.0,
        seed=17,
        record=True,
        connect_timeout=30.0,
        image=toolkit_images["cpu"],
        cpus=1.0,
        memory="2g",
        gpus=gpus,
    )
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    api = _Inspecting(docker_api)
    session = None
    try:
        try:
            session = docker_runtime.DockerSession(api, spec, results_dir, toolkit_images["remote-env"])
        except Exception as exc:  # noqa: BLE001 - GPUs on an engine without the NVIDIA runtime
            assert gpus and "NVIDIA" in str(exc), exc
    finally:
        if session is not None:
            session.close()
    by_name = {c["Name"].lstrip("/").split("-")[1]: c for c in api.inspected.values()}
    env_c, agent_c = by_name["remote"], by_name["agent"]
    identity = kr.LevelIdentity(job_id=1, attempt=1, index=0, team="rocket")
    settings = KubernetesSettings.from_mapping({"remote_env_image": toolkit_images["remote-env"]})
    job = kr.render_level_job(spec, identity, settings, grace_seconds=60)
    pod = job["spec"]["template"]["spec"]
    k_env, k_agent = pod["containers"]

    # Images: the same agent image and the same remote-env image.
    assert agent_c["Config"]["Image"] == k_agent["image"] == spec.image
    assert env_c["Config"]["Image"] == k_env["image"] == toolkit_images["remote-env"]

    # The bridge: an in-memory volume of the same size, at the same path for the agent (the Kubernetes
    # env container, not root, mounts it at ENV_BRIDGE_MOUNT: /root is not searchable by its user).
    (agent_bridge,) = [m for m in agent_c["Mounts"] if m["Destination"] == kr.BRIDGE_MOUNT]
    (env_bridge,) = [m for m in env_c["Mounts"] if m["Destination"] == kr.BRIDGE_MOUNT]
    assert agent_bridge["Name"] == env_bridge["Name"]
    options = api.volumes[agent_bridge["Name"]]["Options"]
    assert options["type"] == "tmpfs"
    docker_size = options["o"].split("size=", 1)[1]
    k_bridge = next(v for v in pod["volumes"] if v["name"] == "bridge")["emptyDir"]
    assert k_bridge == {"medium": "Memory", "sizeLimit": kr.quantity(docker_size)}
    assert {"name": "bridge", "mountPath": kr.BRIDGE_MOUNT} in k_agent["volumeMounts"]
    assert {"name": "bridge", "mountPath": kr.ENV_BRIDGE_MOUNT} in k_env["volumeMounts"]

    # No network for the agent: Docker's "none"; on Kubernetes, the deny-all policy selects the pod.
    assert agent_c["HostConfig"]["NetworkMode"] == "none"
    policy = kr.render_network_policy(settings)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy["spec"]

    # CPU, memory, GPU of the agent.
    assert agent_c["HostConfig"]["NanoCpus"] == int(min(spec.cpus, os.cpu_count() or 1) * 1e9)
    assert k_agent["resources"]["limits"]["cpu"] == kr.cpu_quantity(spec.cpus)
    assert agent_c["HostConfig"]["Memory"] == 2 * 1024**3 and k_agent["resources"]["limits"]["memory"] == "2Gi"
    docker_gpu = bool(agent_c["HostConfig"].get("DeviceRequests"))
    assert docker_gpu == gpus == ("nvidia.com/gpu" in k_agent["resources"]["limits"])

    # Budgets, seed, recording, level: the env program gets the same arguments (where it works aside).
    docker_argv = env_c["Config"]["Cmd"]
    assert _without_placement(docker_argv) == _without_placement(k_env["args"])
    assert _without_placement(k_env["args"]) == _without_placement(
        to_argv(spec, EnvPlacement(bridge_dir=Path("b"), results_dir=Path("r")))
    )
    for flag, value in (("--timestep-limit", "4321"), ("--wallclock-limit", "600.0"), ("--seed", "17")):
        assert k_env["args"][k_env["args"].index(flag) + 1] == value
    assert "--record" in k_env["args"]
    # The budget, the grace, and the allowance for scheduling and image pulls (not charged to the team).
    assert pod["activeDeadlineSeconds"] == 600 + 60 + settings.start_allowance_seconds

    # Labels: Docker's name the session and the process that made it; the Job's name the job, level,
    # attempt and team (the server knows them; the Docker runtime's labels do not carry them yet).
    assert docker_runtime.SESSION_LABEL in agent_c["Config"]["Labels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert (labels[kr.LABEL_JOB], labels[kr.LABEL_LEVEL], labels[kr.LABEL_ATTEMPT], labels[kr.LABEL_TEAM]) == (
        "1",
        "0",
        "1",
        "rocket",
    )


@pytest.mark.slow
def test_the_env_program_mirrored_rebuilds_its_results(tmp_path: Path) -> None:
    """The real env program and the bundled agent; the files rebuilt from stdout equal the files written."""
    from contestkit.runs.evaluation import BUNDLED_AGENT

    spec = LevelRunSpec(game="Airstriker-Genesis", state="Level1", timestep_limit=1500, wallclock_limit=120.0,
                        seed=5, connect_timeout=30.0)  # fmt: skip
    results_dir = tmp_path / "pod-results"
    workdir = tmp_path / "compo"
    (workdir / "tmp").mkdir(parents=True)
    bridge = workdir / "tmp" / "sock"
    env = subprocess.Popen(
        [sys.executable, "-m", "contestkit.runs.structured_log", *to_argv(spec, EnvPlacement(bridge, results_dir))],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    agent = subprocess.run(
        [sys.executable, "-u", str(BUNDLED_AGENT)],
        cwd=workdir,
        env={**os.environ, "CONTESTKIT_BRIDGE": str(bridge)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out, _ = env.communicate(timeout=120)
    assert env.returncode == 0, out[-2000:]
    assert agent.returncode == 0, agent.stderr[-2000:]
    rebuilt = structured_log.FileAssembler(tmp_path / "server-side")
    records = [r for r in map(structured_log.parse, out.splitlines()) if r is not None]
    for record in records:
        if record.kind is structured_log.RecordKind.FILE:
            rebuilt.add(record.data)
    assert records[-1].kind is structured_log.RecordKind.END
    assert any(r.kind is structured_log.RecordKind.PROGRESS for r in records)
    for name in (results.MONITOR, results.LOG, results.ENV_STATUS, results.PROGRESS):
        assert (tmp_path / "server-side" / name).read_bytes() == (results_dir / name).read_bytes(), name
    assert "session ended: timestep-budget" in out
