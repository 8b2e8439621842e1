"""bench/agents.py's Stable-Baselines3 entry, run tiny so it cannot rot: a real SB3 PPO learning
against the real contest env through ``contestkit eval --runtime local``, as the benchmark runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.commands import subprocess_env
from tests.support.paths import REPO

pytest.importorskip("stable_baselines3", reason="bench extra not installed (pip install -e '.[bench]')")


@pytest.mark.slow
def test_sb3_ppo_learns_through_contestkit_eval_and_ends_at_the_budget(tmp_path: Path) -> None:
    """One rollout of 400 timesteps and one update, then the env's budget ends the run: exit 0,
    every timestep counted, and the agent said which settings it learned with."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "agents.py"), "--agents", "sb3-ppo", "--timesteps", "400",
         "--threads", "1", "--results-dir", str(tmp_path), "--json"],  # fmt: skip
        capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    document = json.loads(proc.stdout.strip().splitlines()[-1])
    (row,) = document["agents"]
    assert row["agent"] == "sb3-ppo" and row["exit_code"] == 0 and row["timesteps"] == 400
    stdout = (Path(row["results_dir"]) / "agent-stdout.txt").read_text()
    assert "SB3 PPO (RL Zoo Atari settings) seed 0, 400 timesteps" in stdout
    assert "run over: TimestepTimeoutError" in stdout


def test_the_zoo_settings_are_adapted_only_where_the_contest_forces_it() -> None:
    """One env per level-run keeps RL Zoo's 1,024 samples an update (8 envs x 128 steps); the rest
    are RL Zoo's Atari values, annealed to 0 over the budget."""
    sys.path.insert(0, str(REPO / "bench"))
    import sb3_agent  # type: ignore[import-not-found]

    zoo = sb3_agent.ZOO_ATARI
    assert (zoo["n_envs"], zoo["n_steps"], zoo["n_epochs"], zoo["batch_size"]) == (8, 128, 4, 256)
    schedule = sb3_agent.linear(zoo["learning_rate"])
    assert schedule(1.0) == pytest.approx(2.5e-4) and schedule(0.0) == 0.0
