"""The public leaderboard, answered from a cache that a cheap fingerprint query keeps exact.

Why: the leaderboard was rebuilt from every finished job on each request (4,448 jobs at the 2018
scale: 29-50 req/s and a p99 of 7-8 s at 200 clients). Now a request asks the database only for a
fingerprint of what the leaderboard depends on (how many finished jobs and teams there are, the last
finish time, the highest ids: two index-only aggregates) and answers with the JSON bytes built the
last time that fingerprint was seen. Any job finishing, restarting or being deleted, and any team
added or removed, changes the fingerprint, in this process or another (``server`` CLI commands,
a second server on the same PostgreSQL). A team renamed in place changes nothing the fingerprint
sees, so an entry is also rebuilt after ``max_age`` seconds at the latest.

And the fingerprint itself is read only when it may have moved: every commit that wrote a job or a
team moves ``writes_version()`` (SQLAlchemy session events, so the code that writes needs no hook):
this process's counter, and the write mark all processes of the server share
(``storage/writemark``, once ``share_writes`` mapped it: the scheduler's process finishes the jobs
that the API workers of ``server run --workers N`` show). Writes of processes that share no mark
(CLI commands, a server on another host) are looked for every ``recheck`` seconds. So a request
to an unchanged board touches no database at all (measured: the fingerprint query on every request
held ``/rest/leaderboard`` at p99 147 ms at 200 clients on 2 cores, where the page that skipped it
answered in 15 ms). The pages' leaderboard uses the same counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from contestkit.server.storage.db import FINISHED, Database, Job, Team
from contestkit.server.storage.writemark import WriteMark

_TABLES = (Job.__table__, Team.__table__)
CLAIM_EXPIRY = 30.0  # seconds: see BoardCache._claimed_at
_writes_version = [0]
_shared: list[WriteMark] = []  # the data directory's mark, once share_writes mapped it


def share_writes(data_dir: Path) -> None:
    """Move, and read, the write mark of ``data_dir`` shared by every process of its server.

    One per process (a process serves one data directory; a later call replaces the earlier mark,
    left mapped for whoever still reads it: tests that build several servers in one process then
    only recheck more often)."""
    _shared[:] = [WriteMark(data_dir)]


def writes_version() -> tuple[int, int]:
    """Moves with every commit that wrote the jobs or teams table: in this process, or in any process
    of this server that shares the write mark."""
    return _writes_version[0], (_shared[0].read() if _shared else 0)


@event.listens_for(Session, "after_flush")
def _note_rows(session: Session, _context: Any) -> None:
    if any(isinstance(row, (Job, Team)) for row in (*session.new, *session.dirty, *session.deleted)):
        session.info["contestkit_board_written"] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statements(state: Any) -> None:
    if (state.is_update or state.is_insert or state.is_delete) and getattr(state.statement, "table", None) in _TABLES:
        state.session.info["contestkit_board_written"] = True


@event.listens_for(Session, "after_commit")
def _bump(session: Session) -> None:
    if session.info.pop("contestkit_board_written", False):
        _writes_version[0] += 1
        if _shared:
            _shared[0].move()


def fingerprint(db: Session) -> tuple[Any, ...]:
    """What changes whenever the leaderboard's rows can change (except a rename in place)."""
    jobs = db.execute(
        select(func.count(), func.max(Job.finished_at), func.max(Job.id)).where(Job.status == FINISHED)
    ).one()
    teams = db.execute(select(func.count(), func.max(Team.id))).one()
    return (*jobs, *teams)


class BoardCache:
    """``get()`` -> the leaderboard's JSON bytes, rebuilt by ``build(session)`` when the fingerprint moved."""

    def __init__(
        self, database: Database, build: Callable[[Session], bytes], max_age: float = 10.0, recheck: float = 2.0
    ) -> None:
        self.database = database
        self.build = build
        self.max_age = max_age
        self.recheck = recheck
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._built_at = 0.0
        self._checked_at = 0.0
        self._version: tuple[int, int] | None = None
        self._body = b""
        # When a caller of peek() was told to check (it calls get() on a thread); a claim older than
        # CLAIM_EXPIRY is taken again, should that caller never have got there (cancelled).
        self._claimed_at: float | None = None

    def _fresh(self) -> bool:
        return (
            self._version == writes_version()
            and time.monotonic() - self._checked_at < self.recheck
            and time.monotonic() - self._built_at < self.max_age
        )

    def peek(self) -> bytes | None:
        """The cached bytes, or None for the one caller that must check: it then calls ``get()``
        off the event loop.

        While that check runs, every other caller is answered the board as it was, here, rather
        than sent to a worker thread to find the check taken (what ``get()`` would answer them).
        Why: at 200 connections with no think time, every request that arrived during a check
        queued for a thread, and the threads fighting the event loop for the GIL (5 ms slices)
        held some connections for seconds: /rest/leaderboard p99 2.5 s, p50 83 ms. Only before
        the first build does everyone wait."""
        if self._fresh():
            return self._body
        if self._key is None:
            return None
        now = time.monotonic()
        if self._claimed_at is not None and now - self._claimed_at < CLAIM_EXPIRY:
            return self._body
        self._claimed_at = now
        return None

    def get(self) -> bytes:
        """The board, checked against the database when a check is due (blocking: call it off the loop)."""
        try:
            return self._get()
        finally:
            self._claimed_at = None  # whoever peek() sent here is done: the next due check may be claimed

    def _get(self) -> bytes:
        if self._fresh():
            return self._body
        # One thread looks (and rebuilds). The others answer with the board as it was until it is
        # done, rather than queue behind it: a rebuild at the 2018 scale takes about a second on 2
        # cores, and 200 clients waiting for it pushed the p99 from 18 ms to a second.
        if not self._lock.acquire(blocking=self._key is None):
            return self._body
        try:
            if self._fresh():
                return self._body
            version = writes_version()
            with self.database.session() as db:
                key = fingerprint(db)
                if key != self._key or time.monotonic() - self._built_at >= self.max_age:
                    self._body = self.build(db)
                    self._key, self._built_at = key, time.monotonic()
            self._version, self._checked_at = version, time.monotonic()
            return self._body
        finally:
            self._lock.release()
