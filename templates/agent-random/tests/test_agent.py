"""The agent's own tests: a fast unit check, then one short evaluation on the local runtime.

Run them after every change (`pytest`); `pytest -m "not eval"` skips the evaluation.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.main import run

PROJECT = Path(__file__).resolve().parent.parent


class FakeEnv:
    """A stand-in for the remote env: the budget error after ``limit`` steps."""

    buttons = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]

    def __init__(self, limit: int, episode_length: int = 10) -> None:
        from contestkit.bridge.errors import TimestepTimeoutError

        self._error = TimestepTimeoutError
        self.limit = limit
        self.episode_length = episode_length
        self.steps = 0
        self.t = 0

    def reset(self) -> tuple[np.ndarray, dict]:
        self.t = 0
        return np.zeros((224, 320, 3), np.uint8), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.steps >= self.limit:
            raise self._error("timestep budget used up")
        assert np.asarray(action).shape == (12,)
        self.steps += 1
        self.t += 1
        return np.zeros((224, 320, 3), np.uint8), 1.0, self.t >= self.episode_length, False, {}


def test_run_plays_until_the_budget_ends() -> None:
    assert run(FakeEnv(limit=95)) == {"timesteps": 95, "episodes": 9}


@pytest.mark.eval
def test_a_short_local_eval_plays_episodes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "eval", "Airstriker-Genesis", "Level1", "--runtime", "local",
         "--timestep-limit", "1500", "--results-dir", str(results)],
        cwd=PROJECT, env=dict(os.environ), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    monitors = list(results.rglob("monitor.csv"))
    assert monitors, f"no monitor.csv under {results}"
    with monitors[0].open() as fh:
        episodes = list(csv.DictReader(fh))
    assert episodes and all(float(e["l"]) > 0 for e in episodes)
