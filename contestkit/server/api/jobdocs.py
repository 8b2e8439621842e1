"""A team's job list as JSON, with ended jobs' documents kept ready.

Why: ``GET /rest/job/status/all`` loaded every job of the team with all its levels, built each
document and validated it on every request, so its cost grew with the team (the busiest team of
the 2018-scale data, 57 jobs and a 74 KB answer: 94 req/s and p99 282 ms at 20 connections). An
ended job (finished, failed, cancelled) does not change until it is run again, and running it again
changes its status, attempt and finish time. So a request now reads only those few columns of the
team's jobs, answers ended jobs from their JSON bytes kept here, and loads in full only the jobs it
has not seen in that state (queued and running ones always).

The key of a kept document is read from the database on every request, so a job restarted or
re-run by another process (a second API worker, a ``server`` CLI command) is never answered stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from contestkit.server.contest import phases
from contestkit.server.queue.operations import MAX_ID
from contestkit.server.storage.db import TERMINAL, Job

MAX_KEPT = 20_000  # documents kept (LRU); about 1.3 KB each: the 2018 contest had 4,448 jobs

# What changes whenever an ended job's document can change (a restart, a re-run level, a resume).
_STAMP = (Job.status, Job.attempt, Job.resumes, Job.finished_at, Job.score, Job.error)


class EndedJobDocuments:
    """``team_jobs(db, team_id, ...)`` -> the JSON array of the team's jobs, newest first."""

    def __init__(self, encode: Callable[[Job], bytes], max_kept: int = MAX_KEPT) -> None:
        self.encode = encode  # a job -> its document's JSON bytes (the API's model, exclude_none)
        self.max_kept = max_kept
        self._kept: OrderedDict[int, tuple[tuple[Any, ...], bytes]] = OrderedDict()
        self._lock = threading.Lock()  # requests run on several worker threads

    def __len__(self) -> int:
        return len(self._kept)

    def team_jobs(self, db: Session, team_id: int, *, limit: int | None = None, before: int | None = None) -> bytes:
        """What ``operations.all_jobs`` lists (same order, same paging), as one JSON array."""
        query = select(Job.id, *_STAMP).where(Job.team_id == team_id, Job.phase == phases.PhaseKind.LEADERBOARD.value)
        if before is not None:
            query = query.where(Job.id < min(before, MAX_ID + 1))
        query = query.order_by(Job.id.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = db.execute(query).all()
        parts: dict[int, bytes] = {}
        missing: dict[int, tuple[Any, ...]] = {}
        with self._lock:
            for job_id, *stamp in rows:
                kept = self._kept.get(job_id)
                if kept is not None and kept[0] == tuple(stamp):
                    self._kept.move_to_end(job_id)
                    parts[job_id] = kept[1]
                else:
                    missing[job_id] = tuple(stamp)
        if missing:
            jobs = db.scalars(select(Job).where(Job.id.in_(missing)).options(selectinload(Job.workers))).all()
            for job in jobs:
                body = self.encode(job)
                parts[job.id] = body
                if job.status in TERMINAL:
                    self._keep(job.id, tuple(getattr(job, column.key) for column in _STAMP), body)
        return b"[" + b",".join(parts[job_id] for job_id, *_ in rows if job_id in parts) + b"]"

    def _keep(self, job_id: int, stamp: tuple[Any, ...], body: bytes) -> None:
        with self._lock:
            self._kept[job_id] = (stamp, body)
            self._kept.move_to_end(job_id)
            while len(self._kept) > self.max_kept:
                self._kept.popitem(last=False)
