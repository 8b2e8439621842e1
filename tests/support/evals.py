"""Watching a running ``contestkit eval`` from outside: its progress file, and the processes it leaves."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.polling import wait_until


def progress_of(results_dir: Path) -> dict:
    """``progress.json`` as the eval last wrote it (empty before the first write)."""
    path = results_dir / "progress.json"
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def wait_for_progress(proc: subprocess.Popen, results_dir: Path, key: str, at_least: int,
                      timeout: float = 120.0) -> None:  # fmt: skip
    """Wait until the eval's progress reports ``key`` (episodes, timesteps) at ``at_least``; kill the
    eval and fail if it never does."""
    try:
        wait_until(lambda: progress_of(results_dir).get(key, 0) >= at_least, timeout=timeout, interval=0.2,
                   message=f"the evaluation's {key} to reach {at_least}")  # fmt: skip
    except AssertionError:
        proc.kill()
        raise


def processes_mentioning(text: str) -> list[str]:
    """The command lines of the running processes that mention ``text`` (a results folder, an agent)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if text in line and "ps -eo" not in line]
