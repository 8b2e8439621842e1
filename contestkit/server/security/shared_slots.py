"""A counting semaphore shared by the processes of one server: ``count`` files, each held by ``flock``.

Why: the hash pool admits at most a bound of concurrent Argon2 checks (one per CPU running, four per
CPU waiting), and refuses the rest at once. Split evenly between ``server run --workers N``'s
processes, a worker that happened to receive more of a burst's logins than its share refused some
while another worker's places sat free (60 concurrent guessers: three 503s where one process gave
none). Held in files, the bound is the server's: any process takes any free place.

How: place ``i`` is the file ``slot-i`` in a directory of the data directory; a process holds it
with a non-blocking exclusive ``flock`` on its own open descriptor. The kernel drops a dead
process's locks, so a worker that crashed mid-check frees its places. Inside a process, a place
this process already holds is skipped (``flock`` on the same descriptor would succeed twice).
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class SharedSlots:
    """``count`` places shared by every process that opens the same ``directory``."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(mode=0o700, exist_ok=True)
        self.count = count
        self._fds = [os.open(directory / f"slot-{i}", os.O_RDWR | os.O_CREAT, 0o600) for i in range(count)]
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """A free place, now held by this process (give it back with ``give``); None when all are taken."""
        with self._lock:
            for index, fd in enumerate(self._fds):
                if index in self._held:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                self._held.add(index)
                return index
        return None

    def give(self, index: int) -> None:
        with self._lock:
            fcntl.flock(self._fds[index], fcntl.LOCK_UN)
            self._held.discard(index)

    def any_free(self) -> bool:
        """Whether ``take`` would find a place now (a hint: another process may take it first)."""
        index = self.take()
        if index is None:
            return False
        self.give(index)
        return True

    def close(self) -> None:
        with self._lock:
            for fd in self._fds:
                os.close(fd)
            self._fds = []
