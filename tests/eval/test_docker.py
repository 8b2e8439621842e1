"""`contestkit eval --runtime docker` with a real engine: containers, volume, cleanup in every case."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from contestkit.runs.results import read_monitor
from contestkit.runtime.docker import SESSION_LABEL
from tests.support.commands import run_cli
from tests.support.evals import wait_for_progress
from tests.support.paths import GAME, REPO, STATE

pytestmark = pytest.mark.docker
AGENTS = REPO / "tests" / "agents"


def _leftovers(api) -> tuple[list, list]:
    containers = api.containers(all=True, filters={"label": SESSION_LABEL})
    volumes = (api.volumes(filters={"label": SESSION_LABEL}) or {}).get("Volumes") or []
    return containers, volumes


def _agent_image(api, tmp_path: Path, script: Path) -> str:
    """The issue's 3-line Dockerfile: FROM contestkit/agent:cpu plus the agent script."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "agent.py").write_text(script.read_text())
    (ctx / "Dockerfile").write_text("FROM contestkit/agent:cpu\nADD agent.py /root/compo/agent.py\n")
    tag = f"contestkit-test-agent-{uuid.uuid4().hex[:8]}"
    for _ in api.build(path=str(ctx), tag=tag, rm=True, decode=True):
        pass
    return tag


@pytest.fixture
def make_image(docker_api, toolkit_images, tmp_path):
    made = []

    def make(script: Path) -> str:
        tag = _agent_image(docker_api, tmp_path, script)
        made.append(tag)
        return tag

    yield make
    for tag in made:
        try:
            docker_api.remove_image(tag, force=True)
        except Exception:
            pass


def test_contest_agent_in_containers(docker_api, make_image, tmp_path):
    image = make_image(AGENTS / "contest_doc_agent.py")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--timestep-limit", "6000",
                  "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert read_monitor(r / "monitor.csv"), "no episode in monitor.csv"
    assert "starting episode" in (r / "agent-stdout.txt").read_text()
    assert "serving Airstriker-Genesis Level1" in (r / "remote-stdout.txt").read_text()
    summary = json.loads((r / "summary.json").read_text())
    assert summary["runtime"] == "docker" and summary["timesteps"] == 6000 and summary["ok"]
    # Streamed live to the terminal as well.
    assert "agent | starting episode" in res.stderr
    assert _leftovers(docker_api) == ([], [])


def test_cpuset_pins_both_containers(docker_api, make_image, tmp_path):
    cpu = max(os.sched_getaffinity(0))
    image = make_image(AGENTS / "affinity_agent.py")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--timestep-limit", "300",
                  "--cpuset", str(cpu), "--results-dir", str(r), "--quiet", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"cpus: {cpu}\n" in (r / "agent-stdout.txt").read_text()
    assert json.loads((r / "remote-status.json").read_text())["cpus"] == [cpu]
    assert _leftovers(docker_api) == ([], [])


def test_agent_has_no_network(docker_api, make_image, tmp_path):
    image = make_image(AGENTS / "network_probe_agent.py")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--timestep-limit", "300",
                  "--results-dir", str(r), "--quiet", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "network: unreachable" in (r / "agent-stdout.txt").read_text()
    assert "agent |" not in res.stderr  # --quiet
    assert _leftovers(docker_api) == ([], [])


def test_crashing_agent_cleans_up(docker_api, make_image, tmp_path):
    image = make_image(AGENTS / "crashing_agent.py")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--timestep-limit", "20000",
                  "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1
    assert "exited with status 1" in res.stderr and "tensor shape mismatch" in res.stderr
    assert len(read_monitor(r / "monitor.csv")) == 2
    assert _leftovers(docker_api) == ([], [])


def test_ctrl_c_cleans_up(docker_api, make_image, tmp_path, start_eval):
    image = make_image(AGENTS / "slow_agent.py")
    r = tmp_path / "r"
    proc = start_eval(GAME, STATE, "--runtime", "docker", "--image", image, "--results-dir", str(r), "--quiet",
                      cwd=tmp_path)  # fmt: skip
    wait_for_progress(proc, r, "timesteps", 201, timeout=180)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert json.loads((r / "summary.json").read_text())["end_reason"] == "interrupted"
    assert _leftovers(docker_api) == ([], [])


def test_failure_half_way_leaves_nothing(docker_api, toolkit_images, tmp_path):
    # The volume and the env container exist before the agent container fails to be created.
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", "contestkit-no-such-image:v0",
                  "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0
    assert "contestkit-no-such-image:v0" in res.stderr and "Traceback" not in res.stderr
    assert _leftovers(docker_api) == ([], [])


def test_failure_after_containers_exist_leaves_nothing(docker_api, make_image, tmp_path):
    # A bad --memory fails when the agent container is made: the volume and env container exist.
    image = make_image(AGENTS / "contest_doc_agent.py")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--memory", "lots",
                  "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0
    assert "memory" in res.stderr and "Traceback" not in res.stderr
    # Nothing ran: no summary claims a result, so the same command can simply be fixed and rerun.
    assert not (r / "summary.json").exists() and not (r / "agent-stdout.txt").exists()
    again = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--memory", "lots",
                    "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert "memory" in again.stderr and "already holds results" not in again.stderr
    assert _leftovers(docker_api) == ([], [])


def test_gpus_without_nvidia_runtime_says_so(docker_api, make_image, tmp_path):
    image = make_image(AGENTS / "contest_doc_agent.py")
    info = docker_api.info()
    if "nvidia" in (info.get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "docker", "--image", image, "--gpus",
                  "--timestep-limit", "300", "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0
    assert "NVIDIA" in res.stderr and "Traceback" not in res.stderr
    assert _leftovers(docker_api) == ([], [])
