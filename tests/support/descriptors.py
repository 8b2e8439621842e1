"""A process's open file descriptors (Linux ``/proc/<pid>/fd``), for leak tests."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def descriptor_targets(pid: int | str = "self") -> list[str]:
    """What each open descriptor of the process points at (a path, ``socket:[...]``, ...)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:  # closed meanwhile
            continue
    return targets


def wait_for_descriptors(pid: int, settled: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
    """Polls the process's descriptors until ``settled(targets)`` holds; returns the last targets."""
    deadline = time.monotonic() + timeout
    targets = descriptor_targets(pid)
    while not settled(targets) and time.monotonic() < deadline:
        time.sleep(0.1)
        targets = descriptor_targets(pid)
    return targets
