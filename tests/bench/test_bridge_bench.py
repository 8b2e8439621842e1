"""Smoke test of bench/bridge.py: it runs end to end and reports every figure the docs quote.

Tiny runs (a few dozen steps), so no figure is checked for speed, only for being there and sane.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bridge.py"), "--json", *args],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_ratio_run_reports_own_cost_in_microseconds_and_both_copy_modes() -> None:
    result = _bench("--rounds", "1", "--steps", "40")
    for key in ("ratio", "view_ratio", "floor_ratio", "overhead_us_per_step", "own_cost_us_per_step"):
        assert isinstance(result[key], float), key
    assert result["ratio"] > 0 and result["view_ratio"] > 0
    assert result["command"] and result["date"]  # the docs site refuses a figure without them
    # own cost = overhead - floor, both in us per step
    assert abs(result["own_cost_us_per_step"] - (result["overhead_us_per_step"] - result["floor_round_trip_us"])) < 0.5


def test_breakdown_times_every_part_of_a_step() -> None:
    result = _bench("--breakdown", "--steps", "40", "--no-copy")
    parts = result["us"]
    assert result["copy_obs"] is False
    assert set(parts) >= {
        "action send + env wake", "emulator step", "observation write", "episode log",
        "reply + agent wake", "observation copy", "agent loop (next action)",
    }  # fmt: skip
    assert all(value >= 0 for value in parts.values())
    assert parts["emulator step"] > parts["observation write"]  # the emulator dominates a step
