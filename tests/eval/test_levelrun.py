"""The level-run spec: every field reaches whoever reads it, and the env program's command line round-trips.

The end-to-end tests run the real env program and a real agent (local processes, and Docker
containers when an engine answers) and read back what the env program says it received.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest

from contestkit.runs import levelrun
from contestkit.runs.evaluation import EvalRequest, evaluate_level
from contestkit.runs.levelrun import (
    EnvPlacement,
    LevelRunSpec,
    Scope,
    default_of,
    docker_only_given,
    fields_of,
    from_argv,
    to_argv,
)
from tests.support.paths import GAME, REPO, STATE

AGENT = REPO / "tests" / "agents" / "contest_doc_agent.py"


def _other_than_default(f: dataclasses.Field):
    """A value of the field's kind that is not its default, so a field dropped on the way shows."""
    default = default_of(f)
    if f.name == "game":
        return GAME
    if f.name == "state":
        return STATE
    if isinstance(default, bool):
        return not default
    kind = f.metadata["parse"]
    if kind is int:
        return (default or 0) + 1200 if f.name == "timestep_limit" else 5
    if kind is float:
        return (default or 0.0) - 7.5
    raise AssertionError(f"test_levelrun does not know how to pick a non-default {f.name}: add it here")


@pytest.fixture
def unusual_run() -> LevelRunSpec:
    """A spec whose every env-program field is away from its default (small budgets, to run quickly)."""
    values = {f.name: _other_than_default(f) for f in fields_of(Scope.ENV)}
    values["timestep_limit"] = 1200
    spec = LevelRunSpec(**values)
    for f in fields_of(Scope.ENV):
        if f.name != "game":
            assert getattr(spec, f.name) != default_of(f), f"{f.name} keeps its default in the test spec"
    return spec


def test_every_field_says_who_reads_it():
    every = {f.name for f in dataclasses.fields(LevelRunSpec)}
    scoped = {f.name for scope in Scope for f in fields_of(scope)}
    assert scoped == every


def test_env_fields_round_trip_through_the_command_line(unusual_run, tmp_path):
    where = EnvPlacement(tmp_path / "b" / "sock", tmp_path / "r", rom_dir=tmp_path / "roms", chown="1000:1000")
    spec, back = from_argv(to_argv(unusual_run, where))
    assert spec.env_options() == unusual_run.env_options()
    assert back == where
    # and the defaults: a spec with only a game comes back as the contest's
    minimal, _ = from_argv(to_argv(LevelRunSpec(game=GAME), where))
    assert minimal == LevelRunSpec(game=GAME)
    assert minimal.timestep_limit == 1_000_000 and minimal.wallclock_limit == 43_200.0


def test_only_env_fields_travel_on_the_command_line(tmp_path):
    spec = LevelRunSpec(game=GAME, agent="secret_agent.py", image="img", cpuset="0", env_vars={"K": "V"})
    argv = to_argv(spec, EnvPlacement(tmp_path, tmp_path))
    for leaked in ("secret_agent.py", "img", "--cpuset", "--image", "--agent", "K"):
        assert leaked not in argv


def test_docker_only_options_come_from_the_spec():
    """What the local runtime refuses is read off the spec's field metadata, not a list of its own."""
    base = LevelRunSpec(game=GAME)
    assert docker_only_given(base) == []
    docker_values = {"image": "img", "remote_image": "env", "gpus": True, "cpus": 2.0, "memory": "1g",
                     "bridge_tmpfs_size": "8m", "pids_limit": 64, "log_limit": 1 << 20}  # fmt: skip
    assert set(docker_values) == {f.name for f in fields_of(Scope.DOCKER)}
    for name, value in docker_values.items():
        assert docker_only_given(base.replace(**{name: value})) == ["--" + name.replace("_", "-")]
    others = base.replace(agent="a.py", project_dir=Path("p"), cpuset="0", env_vars={"K": "V"}, seed=1, record=True)
    assert docker_only_given(others) == []


def _received(results_dir: Path) -> dict:
    return json.loads((results_dir / "remote-status.json").read_text())["options"]


def test_the_local_runtime_passes_every_env_field(unusual_run, tmp_path):
    r = tmp_path / "r"
    run = unusual_run.replace(agent=str(AGENT))
    result = evaluate_level(EvalRequest(run=run, results_dir=r, runtime="local"))
    assert result.ok, result.error
    assert _received(r) == unusual_run.env_options()
    assert result.timesteps == unusual_run.timestep_limit


@pytest.mark.docker
def test_the_docker_runtime_passes_every_env_field(unusual_run, docker_api, toolkit_images, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "agent.py").write_text(AGENT.read_text())
    (ctx / "Dockerfile").write_text("FROM contestkit/agent:cpu\nADD agent.py /root/compo/agent.py\n")
    tag = f"contestkit-test-agent-{uuid.uuid4().hex[:8]}"
    for _ in docker_api.build(path=str(ctx), tag=tag, rm=True, decode=True):
        pass
    try:
        r = tmp_path / "r"
        run = unusual_run.replace(image=tag, bridge_tmpfs_size="32m", remote_image=toolkit_images["remote-env"])
        result = evaluate_level(EvalRequest(run=run, results_dir=r, runtime="docker"))
        assert result.ok, result.error
        assert _received(r) == unusual_run.env_options()
    finally:
        docker_api.remove_image(tag, force=True)


def test_contest_defaults_have_one_home():
    """The numbers the contest fixed, read by eval, the server and the bridge from levelrun."""
    from contestkit.bridge.client import DEFAULT_CONNECT_TIMEOUT
    from contestkit.bridge.server import Budgets
    from contestkit.server.config import ServerConfig

    assert DEFAULT_CONNECT_TIMEOUT == levelrun.CONNECT_TIMEOUT == 300.0
    assert Budgets() == Budgets(levelrun.TIMESTEP_LIMIT, levelrun.WALLCLOCK_LIMIT)
    assert ServerConfig(registry="r").timestep_limit == levelrun.TIMESTEP_LIMIT
    assert ServerConfig(registry="r").wallclock_limit == levelrun.WALLCLOCK_LIMIT
