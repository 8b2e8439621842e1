"""How an API worker process tells the scheduler, in another process, to look at the queue now.

Why: under ``server run --workers N`` the API is served by N processes and the scheduler runs once,
in the parent. A job started (or restarted, or a final queued) through a worker would otherwise
wait for the scheduler's next poll (``Scheduler.poll_seconds``). A worker rings a *doorbell*: one
datagram to a unix socket the scheduler's process listens on, which calls ``Scheduler.wake``.

Why nothing else travels on it: anyone on the host can send to an abstract socket, so a datagram
only ever means "look at the queue" (which the polls do anyway); what to do is read from the
database. A cancel is the ``cancel_requested`` column the scheduler's monitor reads every half
second; ringing makes it look at once (in one process the API stopped the job at once, and a
short level could finish in that half second: the kill must not lose that race now). A lost
datagram (the scheduler restarting, a full buffer) delays a job by one poll, nothing more: the
bell is never the only way a job is seen.

The socket is in Linux's abstract namespace (no file, so no stale socket after a crash and no
108-byte path limit for deep data directories), named from the data directory, so two servers on
one host never hear each other's bell.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from contestkit.server.executors import Executor

log = logging.getLogger("contestkit.server")

_RING = b"w"


def address(data_dir: Path) -> bytes:
    """The abstract socket address of ``data_dir``'s scheduler."""
    digest = hashlib.sha256(str(Path(data_dir).absolute()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return b"\0contestkit-scheduler-" + digest.encode("ascii")


class Doorbell:
    """The scheduler's side: a thread that calls ``wake`` (``Scheduler.look``) for every datagram that arrives."""

    def __init__(self, data_dir: Path, wake: Callable[[], None]) -> None:
        self.wake = wake
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(address(data_dir))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="contestkit-doorbell", daemon=True)

    def start(self) -> Doorbell:
        self._thread.start()
        return self

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                self._socket.recv(16)
            except OSError:  # closed by stop()
                return
            if not self._stopping.is_set():
                self.wake()  # Event.set()s: many rings while the scheduler looks make one more look

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # ends the blocking recv
        except OSError:
            pass
        self._socket.close()
        self._thread.join(5)


class SchedulerLink:
    """The scheduler as an API worker process sees it: ``wake`` and ``cancel`` ring the doorbell, and
    ``executor`` is what the scheduler's process publishes about its engine."""

    def __init__(self, data_dir: Path, executor: Executor) -> None:
        self.executor = executor
        self._address = address(data_dir)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def wake(self) -> None:
        """A job was queued: ask the scheduler to look now (its poll finds the job anyway)."""
        try:
            self._socket.sendto(_RING, self._address)
        except OSError:  # no scheduler listening (stopping, restarting) or its buffer full: the poll covers it
            log.debug("the scheduler's doorbell did not answer", exc_info=True)

    def cancel(self, job_id: int) -> None:
        """The API set ``cancel_requested`` on ``job_id``: the scheduler's monitor stops it; look now."""
        self.wake()

    def close(self) -> None:
        self._socket.close()
