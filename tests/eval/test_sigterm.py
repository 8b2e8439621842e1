"""SIGTERM (what ``timeout`` and process managers send) stops ``contestkit eval`` as Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from contestkit.runs.results import read_monitor
from tests.support.evals import processes_mentioning, wait_for_progress
from tests.support.paths import AGENTS, GAME, STATE

SLOW = AGENTS / "slow_agent.py"


def test_sigterm_stops_both_halves_keeps_results_and_exits_143(tmp_path: Path, start_eval) -> None:
    r = tmp_path / "r"
    proc = start_eval(GAME, STATE, "--runtime", "local", "--agent", str(SLOW),
                      "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    wait_for_progress(proc, r, "episodes", 1)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    summary = json.loads((r / "summary.json").read_text())
    assert summary["end_reason"] == "interrupted"
    assert summary["episodes"] == len(read_monitor(r / "monitor.csv")) >= 1
    deadline = time.monotonic() + 10  # the halves were stopped before eval exited; ps may lag a moment
    while processes_mentioning(str(r)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(r)) == [] and processes_mentioning(str(SLOW)) == []
