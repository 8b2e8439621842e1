"""Shared fixtures: the contest env on Airstriker (whose ROM ships with stable-retro) and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GAME, STATE = "Airstriker-Genesis", "Level1"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``contestkit ARGS`` as users do, in a fresh process."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "contestkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        input=input,
    )


@pytest.fixture
def cli():
    return run_cli
