"""The ``contestkit`` command in a fresh process, as users run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout first on PYTHONPATH (a server subprocess imports
    the test double by dotted path) and a wide terminal (so no message is wrapped mid-sentence)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``contestkit ARGS`` as users do, in a fresh process; output is captured as text.

    ``env`` is the whole environment of the command (make it with ``subprocess_env(**extra)``), so a
    test can also leave a variable out."""
    return subprocess.run(
        [sys.executable, "-m", "contestkit", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env() if env is None else env,
        input=input,
    )


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
