"""The Kubernetes bench/ scripts run (tiny parameters: they must not rot; their figures are not checked here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(*argv: str) -> object:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_contest_load_runs_every_scenario() -> None:
    rows = _run("bench/contest_load.py", "--nodes", "4", "--scenario", "random,ppo,slow,2018", "--jobs", "30", "--json")
    assert [row["scenario"] for row in rows] == ["random", "ppo", "slow", "2018"]
    assert all(row["level_runs"] > 0 for row in rows)
    assert rows[-1]["claim_cap"] == 100 and rows[-1]["scale_up_delay_min"] > 0
    assert rows[-1]["wait_p50_min"] >= rows[-1]["scale_up_delay_min"], "a new node is not there at once"


def test_k8s_api_load_counts_requests_and_threads() -> None:
    row = _run("bench/k8s_api_load.py", "--runs", "6", "--seconds", "1", "--poll", "0.5", "--json")
    assert row["runs"] == 6 and row["requests_per_second"] > 0 and row["threads"] >= 6
