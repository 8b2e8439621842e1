"""Fixtures of the eval tests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_eval() -> Callable[..., subprocess.Popen[str]]:
    """``start_eval(*args, cwd=)``: ``contestkit eval ARGS`` as a child that Ctrl-C reaches.

    Why not a plain Popen: a shell starts a background job (``pytest ... &`` in a script) with
    SIGINT ignored, every child inherits that, and Python then never raises KeyboardInterrupt: the
    Ctrl-C tests would wait for an eval that cannot hear them. A user's eval runs in the
    terminal's foreground, where SIGINT has its default action; the child is given that."""

    def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "contestkit", "eval", *args],
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default,
        )  # fmt: skip

    return start
