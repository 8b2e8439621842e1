"""bench/compare_agents.py, run on two tiny result files so it cannot rot: the per-agent figures
are the median and the worst seed of the runs it was given, each seed counted once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def _result(path: Path, date: str, rows: list[tuple[str, int, float]]) -> Path:
    runs = [
        {"agent": agent, "seed": seed, "mean_reward_last20": last20, "mean_reward_all": last20 / 2,
         "timesteps_per_s": 100.0 + seed}
        for agent, seed, last20 in rows
    ]  # fmt: skip
    path.write_text(json.dumps({"date": date, "machine": "test machine", "agents": runs}))
    return path


def _compare(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "compare_agents.py"), *argv], capture_output=True, text=True, timeout=60
    )


def test_median_worst_and_each_seed_once(tmp_path: Path) -> None:
    first = _result(tmp_path / "a.json", "2026-11-29", [("ppo", 0, 700.0), ("ppo", 1, 500.0), ("jerk", 0, 750.0)])
    # A re-run of ppo seed 0 in a later file must not count twice; sb3 comes only from here.
    second = _result(tmp_path / "b.json", "2026-12-06", [("ppo", 0, 1.0), ("ppo", 2, 450.0), ("sb3", 0, 300.0)])
    out = tmp_path / "comparison.json"
    done = _compare(str(first), str(second), "--agents", "ppo,sb3", "--output", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["date"] and document["machine"] == "test machine" and "compare_agents.py" in document["command"]
    ppo, sb3 = document["summary"]
    assert (ppo["agent"], ppo["seeds"], ppo["median_last20"], ppo["worst_last20"]) == ("ppo", 3, 500.0, 450.0)
    assert ppo["last20_per_seed"] == [700.0, 500.0, 450.0]
    assert (sb3["agent"], sb3["seeds"], sb3["worst_last20"]) == ("sb3", 1, 300.0)
    assert {r["agent"] for r in document["runs"]} == {"ppo", "sb3"}, "--agents leaves JERK out"
    assert [r["source_date"] for r in document["runs"] if r["agent"] == "ppo"] == ["2026-11-29"] * 2 + ["2026-12-06"]


def test_a_missing_file_is_one_sentence(tmp_path: Path) -> None:
    done = _compare(str(tmp_path / "nope.json"))
    assert done.returncode != 0 and "no such result file" in done.stderr and "Traceback" not in done.stderr
