"""The server's job functions and scheduler called in-process, without an HTTP server: races made
deterministic, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class OfflineContest:
    """A contest data directory without a server: the library's functions called directly."""

    data_dir: Path
    config: Any
    database: Any
    team_id: int

    def finished_job(self, score: float = 6.0) -> int:
        """A job of the team that has finished (written as the queue would, without running it)."""
        from sqlalchemy import update

        from contestkit.server.queue import operations
        from contestkit.server.storage.db import Job, Worker, now

        job = operations.start_job(self.database, self.config, self.team_id, "score-5")
        with self.database.session() as session:
            session.execute(
                update(Job).where(Job.id == job.id).values(status="finished", score=score, finished_at=now())
            )
            session.execute(update(Worker).where(Worker.job_id == job.id).values(status="finished", score=score))
        return job.id

    def job(self, job_id: int, *, as_shown: bool = False) -> dict[str, Any]:
        """The job's document as stored (``as_shown``: as the API shows it, stalled when its heartbeat is stale)."""
        from contestkit.server.api.documents import job_document
        from contestkit.server.queue import operations

        stale_after = self.config.heartbeat_timeout if as_shown else None
        with self.database.session() as db:
            return job_document(operations.get_job(db, self.team_id, job_id), stale_after=stale_after)


class Queue:
    """A Scheduler of the offline contest, stopped when the test ends."""

    def __init__(self, contest: OfflineContest, level_runner: Any = None) -> None:
        from contestkit.server.executors.function import FunctionExecutor
        from contestkit.server.queue.scheduling import Scheduler
        from tests.server.fake_level_runner import fake_level_runner  # imports the server modules

        level_runner = level_runner or fake_level_runner
        self.contest = contest
        self.runner = Scheduler(contest.database, contest.config, FunctionExecutor(level_runner), poll_seconds=0.05)

    def start(self) -> Any:
        self.runner.start()
        return self.runner

    def submit(self, tag: str = "score-5") -> int:
        from contestkit.server.queue import operations

        job_id = operations.start_job(self.contest.database, self.contest.config, self.contest.team_id, tag).id
        self.runner.wake()
        return job_id

    def wait(self, job_id: int, statuses: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.contest.job(job_id)
            if doc["status"] in statuses:
                return doc
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {statuses} within {timeout} s: {doc}")
