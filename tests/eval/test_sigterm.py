"""SIGTERM (what ``timeout`` and process managers send) stops ``contestkit eval`` as Ctrl-C does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from contestkit.results import read_monitor
from tests.support.paths import AGENTS, GAME, STATE

SLOW = AGENTS / "slow_agent.py"


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]


def test_sigterm_stops_both_halves_keeps_results_and_exits_143(tmp_path: Path, start_eval) -> None:
    r = tmp_path / "r"
    proc = start_eval(GAME, STATE, "--runtime", "local", "--agent", str(SLOW),
                      "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = r / "progress.json"
        if progress.exists() and json.loads(progress.read_text() or "{}").get("episodes", 0) >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the evaluation never finished an episode")
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    summary = json.loads((r / "summary.json").read_text())
    assert summary["end_reason"] == "interrupted"
    assert summary["episodes"] == len(read_monitor(r / "monitor.csv")) >= 1
    deadline = time.monotonic() + 10  # the halves were stopped before eval exited; ps may lag a moment
    while _processes_mentioning(str(r)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(str(r)) == [] and _processes_mentioning(str(SLOW)) == []
