"""Smoke test of bench/server_load.py: the closed-loop phases, the busiest team's status/all, the
servers of ``--workers 2,1`` with their CPU figures, the wrk cross-check and the restated goals come
out of a tiny run (a fraction of a second a phase; no figure is judged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUSIEST = "/rest/job/status/all (busiest team)"


def test_closed_loop_phases_and_the_busiest_team(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "server_load.py"), "--seconds", "0.3", "--clients", "1",
         "--routes", BUSIEST, "--workers", "2,1", "--wrk", "--json", str(out)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["command"] and report["date"] and report["machine"]
    phases = {(row["database"], row["clients"], row["think_s"]) for row in report["rows"]}
    for database in ("sqlite empty", "sqlite seeded"):
        assert {(database, 20, 0.0), (database, 200, 0.0), (database, 1, 1.0)} <= phases
    assert all(row["route"] == BUSIEST and row["requests"] > 0 for row in report["rows"])
    # --workers 2,1: both servers ran every phase, and each phase says where the CPU went.
    assert {row["server"] for row in report["rows"]} == {"this", "workers=1"}
    # (a 0.3 s phase of one client may cost the server less than one 10 ms clock tick: only the busy ones count)
    assert all(row["server_cores"] >= 0 and row["cpu_busy_pct"] for row in report["rows"])
    assert all(row["server_cores"] > 0 for row in report["rows"] if row["clients"] == 200)
    assert any(BUSIEST in goal and "< 250" in goal for goal in report["goals"])
    # --wrk: the cross-check ran wrk on each server at 20 and 200 connections and read its figures.
    wrk = {(row["server"], row["connections"]) for row in report["wrk"] if row["req_per_s"] and row["p99_ms"]}
    assert {("this", 20), ("this", 200), ("workers=1", 20), ("workers=1", 200)} <= wrk
