"""Level-run limits with a real Docker engine (issue 23): a fork bomb, a flood of out/ and a flood of
stdout each end with a clear reason, inside bounds the host set. Small limits keep them quick; the
defaults are checked against the documentation (docs/host-limits-and-abuse.md) separately."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contestkit.runs import levelrun
from contestkit.runs.capped_output import HeadTailWriter
from contestkit.runs.evaluation import EvalRequest, evaluate_level, over_out_limit
from contestkit.runs.levelrun import LevelRunSpec
from contestkit.runs.results import AGENT_OUT
from tests.support.paths import GAME, REPO, STATE

AGENTS = REPO / "tests" / "agents"
DOCS = REPO / "docs" / "host-limits-and-abuse.md"


def test_the_documented_defaults_are_the_code_defaults():
    text = DOCS.read_text()
    spec = LevelRunSpec(game=GAME, state=STATE)
    assert spec.pids_limit == levelrun.PIDS_LIMIT == 1024 and "| `agent_pids_limit` | 1024 |" in text
    assert spec.agent_memory == levelrun.CONTEST_MEMORY == "56g" and "| `agent_memory` | 56g" in text
    assert spec.out_limit == levelrun.size_bytes("10g") and "| `agent_out_limit` | 10g |" in text
    assert spec.log_limit == levelrun.size_bytes("16m") and "| `agent_log_limit` | 16m |" in text
    assert levelrun.ENGINE_LOG_MAX == "10m" and "max-size 10m" in text


def test_head_and_tail_are_kept_with_a_marker_between(tmp_path):
    path = tmp_path / "agent-stdout.txt"
    out = HeadTailWriter(path, limit=100)
    for i in range(1000):
        out.write(f"{i:04d}\n".encode())
    out.close()
    text = path.read_text()
    assert text.startswith("0000\n0001\n") and text.endswith("0998\n0999\n")
    assert "[contestkit: 4900 bytes of output elided here" in text
    assert len(text) < 100 + 120


def test_out_over_its_limit_is_one_sentence(tmp_path):
    spec = LevelRunSpec(game=GAME, state=STATE, out_limit=1 << 20)
    (tmp_path / AGENT_OUT).mkdir()
    (tmp_path / AGENT_OUT / "a.bin").write_bytes(b"x" * 1000)
    assert over_out_limit(spec, tmp_path) is None
    (tmp_path / AGENT_OUT / "b.bin").write_bytes(b"x" * (2 << 20))
    sentence = over_out_limit(spec, tmp_path)
    assert sentence is not None and sentence.count(".") == 1 and "more than 1 MiB into its out/" in sentence


@pytest.fixture(scope="module")
def hostile_image(docker_api, toolkit_images, tmp_path_factory) -> str:
    import uuid

    ctx = tmp_path_factory.mktemp("hostile")
    (ctx / "agent.py").write_text((AGENTS / "hostile_agent.py").read_text())
    (ctx / "Dockerfile").write_text("FROM contestkit/agent:cpu\nADD agent.py /root/compo/agent.py\n")
    tag = f"contestkit-test-hostile-{uuid.uuid4().hex[:8]}"
    for _ in docker_api.build(path=str(ctx), tag=tag, rm=True, decode=True):
        pass
    yield tag
    docker_api.remove_image(tag, force=True)


def _run(image: str, results: Path, **spec: object) -> dict:
    env = spec.pop("env_vars")
    run = LevelRunSpec(game=GAME, state=STATE, image=image, timestep_limit=3000, env_vars=env, **spec)  # type: ignore[arg-type]
    evaluate_level(EvalRequest(run=run, results_dir=results, runtime="docker"))
    return json.loads((results / "summary.json").read_text())


@pytest.mark.docker
def test_a_fork_bomb_stops_at_the_pids_limit(hostile_image, tmp_path):
    summary = _run(hostile_image, tmp_path / "r", pids_limit=64, env_vars={"HOSTILE_MODE": "fork"})
    assert not summary["ok"]
    assert "fork refused after" in summary["error"] and "Resource temporarily unavailable" in summary["error"]
    refused_at = int(summary["error"].split("fork refused after ")[1].split()[0])
    assert refused_at < 64


@pytest.mark.docker
def test_a_flood_of_out_ends_the_level_as_the_teams_failure(hostile_image, tmp_path):
    results = tmp_path / "r"
    summary = _run(hostile_image, results, out_limit=32 << 20, env_vars={"HOSTILE_MODE": "out", "HOSTILE_MB": "2048"})
    assert not summary["ok"]
    assert summary["error"].startswith("The agent wrote more than 32 MiB into its out/ directory")
    assert not (results / AGENT_OUT).exists() or not any((results / AGENT_OUT).iterdir())


@pytest.mark.docker
def test_a_flood_of_stdout_is_kept_once_head_and_tail(docker_api, hostile_image, tmp_path):
    results = tmp_path / "r"
    summary = _run(hostile_image, results, log_limit=1 << 20, env_vars={"HOSTILE_MODE": "stdout", "HOSTILE_MB": "64"})
    stdout = (results / "agent-stdout.txt").read_bytes()
    assert len(stdout) < (1 << 20) + 200
    assert b"bytes of output elided here" in stdout and stdout.rstrip().endswith(b"the last line")
    assert summary["timesteps"] == 3000  # the level went on to its budget


@pytest.mark.docker
def test_an_agent_over_its_memory_says_so(hostile_image, tmp_path):
    hog = {"HOSTILE_MODE": "memory", "HOSTILE_MB": "512"}
    summary = _run(hostile_image, tmp_path / "r", memory="64m", env_vars=hog)
    assert not summary["ok"]
    assert "stopped for using more than its memory limit (64 MiB, the host's agent_memory)" in summary["error"]
