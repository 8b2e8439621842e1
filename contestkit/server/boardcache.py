"""The public leaderboard, answered from a cache that a cheap fingerprint query keeps exact.

Why: the leaderboard was rebuilt from every finished job on each request (4,448 jobs at the 2018
scale: 29-50 req/s and a p99 of 7-8 s at 200 clients). Now a request asks the database only for a
fingerprint of what the leaderboard depends on (how many finished jobs and teams there are, the last
finish time, the highest ids: two index-only aggregates) and answers with the JSON bytes built the
last time that fingerprint was seen. Any job finishing, restarting or being deleted, and any team
added or removed, changes the fingerprint, in this process or another (``server`` CLI commands,
a second server on the same PostgreSQL). A team renamed in place changes nothing the fingerprint
sees, so an entry is also rebuilt after ``max_age`` seconds at the latest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contestkit.server.db import FINISHED, Database, Job, Team


def fingerprint(db: Session) -> tuple[Any, ...]:
    """What changes whenever the leaderboard's rows can change (except a rename in place)."""
    jobs = db.execute(
        select(func.count(), func.max(Job.finished_at), func.max(Job.id)).where(Job.status == FINISHED)
    ).one()
    teams = db.execute(select(func.count(), func.max(Team.id))).one()
    return (*jobs, *teams)


class BoardCache:
    """``get()`` -> the leaderboard's JSON bytes, rebuilt by ``build(session)`` when the fingerprint moved."""

    def __init__(self, database: Database, build: Callable[[Session], bytes], max_age: float = 10.0) -> None:
        self.database = database
        self.build = build
        self.max_age = max_age
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._built_at = 0.0
        self._body = b""

    def get(self) -> bytes:
        with self.database.session() as db:
            key = fingerprint(db)
            if key == self._key and time.monotonic() - self._built_at < self.max_age:
                return self._body
            with self._lock:  # one rebuild at a time; the others then find it done
                if key != self._key or time.monotonic() - self._built_at >= self.max_age:
                    self._body = self.build(db)
                    self._key, self._built_at = key, time.monotonic()
                return self._body
