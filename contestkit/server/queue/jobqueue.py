"""The job queue in the database: claiming a job, its heartbeat, recording levels, finishing, recovery.

Why in the database and not in memory: a server killed mid-job must lose nothing that finished.

- a level's result is committed the moment it ends (its score, episodes and results directory);
- a running job carries the id of the server process running it (``instance``) and a heartbeat;
  when that server starts again (or when the heartbeat of another server goes stale) the job goes
  back to the queue with its finished levels kept and its unfinished ones re-run from scratch (an
  agent's in-memory state cannot be resumed mid-level), up to ``max_resumes`` times; after that it
  is marked failed with the reason, never left "running" forever;
- a graceful stop (Ctrl-C, SIGTERM) puts running jobs back in the queue without counting a resume.

Every state change of a claimed job is a method here, each one short transaction; *when* they
happen is decided by ``server.scheduling``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from contestkit.env.levellist import LevelName
from contestkit.env.scoring import contest_score
from contestkit.server.api.documents import job_document, summary_json
from contestkit.server.config import ServerConfig, write_private
from contestkit.server.events import JobEvent, emit
from contestkit.server.queue.seeds import draw_attempt_seed
from contestkit.server.storage.db import (
    CANCELLED,
    FAILED,
    FINISHED,
    PENDING,
    QUEUED,
    RUNNING,
    Database,
    Job,
    Worker,
    now,
)
from contestkit.states import LevelState, StopReason

log = logging.getLogger("contestkit.server.queue.jobqueue")


def attempt_dir(config: ServerConfig, job_id: int, attempt: int) -> Path:
    """Where an attempt's results live: ``jobs/<id>/attempt-<n>/`` under the data directory."""
    return config.jobs_dir / str(job_id) / f"attempt-{attempt}"


@dataclass(frozen=True)
class PendingLevel:
    """A claimed job's level still to run: its row in the workers table, its place in the job, and which
    level it is (a :class:`~contestkit.env.levellist.LevelName`, the one type for a named level)."""

    worker_id: int
    index: int
    name: LevelName


@dataclass(frozen=True)
class ClaimedJob:
    """What the scheduler needs to run a claimed job's remaining levels."""

    job_id: int
    attempt: int
    team: str  # the team's registry namespace (labels and logs name it)
    image: str
    digest: str | None
    attempt_dir: Path
    timestep_limit: int
    wallclock_limit: float
    seed: int  # the attempt's (server.seeds)
    pending: list[PendingLevel]


class JobQueue:
    """The queue's state changes, made by the server process ``instance``."""

    def __init__(self, database: Database, config: ServerConfig, instance: str) -> None:
        self.database = database
        self.config = config
        self.instance = instance

    # -- claiming --

    def claim(self) -> int | None:
        """The oldest queued job, now running here; None when the queue is empty."""
        with self.database.session() as db:
            candidates = db.scalars(
                select(Job.id).where(Job.status == QUEUED).order_by(Job.priority.desc(), Job.queued_at, Job.id).limit(5)
            ).all()
            for job_id in candidates:
                stamp = now()
                result = db.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == QUEUED)
                    .values(status=RUNNING, runner=self.instance, heartbeat_at=stamp, cancel_requested=0)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    job = db.get(Job, job_id)
                    assert job is not None
                    if job.started_at is None or job.seed is None:
                        # The attempt's first start (a resume keeps its seed; see server.seeds).
                        job.seed = draw_attempt_seed(self.config.seed)
                    if job.started_at is None:
                        job.started_at = stamp
                    started = {
                        "job": job.id, "team": job.team.namespace, "attempt": job.attempt,
                        "resume": job.resumes or None, "seed": job.seed, "image": job.image, "runner": self.instance,
                    }  # fmt: skip
                    break
            else:
                return None
        emit(JobEvent.STARTED, **started)
        return int(started["job"])

    def claimed(self, job_id: int) -> ClaimedJob:
        with self.database.session() as db:
            job = db.get(Job, job_id)
            assert job is not None
            return ClaimedJob(
                job_id=job.id,
                attempt=job.attempt,
                team=job.team.namespace,
                image=job.image,
                digest=job.digest,
                attempt_dir=attempt_dir(self.config, job.id, job.attempt),
                timestep_limit=job.timestep_limit,
                wallclock_limit=job.wallclock_limit,
                seed=job.seed if job.seed is not None else draw_attempt_seed(self.config.seed),
                pending=[
                    PendingLevel(w.id, w.idx, LevelName(w.game, w.state))
                    for w in job.workers
                    if w.status == LevelState.PENDING
                ],
            )

    def set_digest(self, job_id: int, digest: str) -> None:
        with self.database.session() as db:
            job = db.get(Job, job_id)
            assert job is not None
            job.digest = digest

    # -- heartbeat --

    def heartbeat(self, job_ids: list[int], *, beat: bool) -> list[int]:
        """Of ``job_ids`` (running here), those whose team asked to cancel; refreshes their heartbeat."""
        with self.database.session() as db:
            cancelled = list(db.scalars(select(Job.id).where(Job.id.in_(job_ids), Job.cancel_requested == 1)))
            if beat:
                db.execute(
                    update(Job)
                    .where(Job.id.in_(job_ids), Job.runner == self.instance, Job.status == RUNNING)
                    .values(heartbeat_at=now())
                )
        return cancelled

    # -- levels --

    def level_started(self, worker_id: int, results_dir: Path) -> None:
        with self.database.session() as db:
            worker = db.get(Worker, worker_id)
            assert worker is not None
            worker.status = LevelState.RUNNING
            worker.started_at = now()
            worker.error = None
            worker.progress = 0.0
            worker.mean_episode_reward = None
            worker.results_dir = str(results_dir)
            started = {"job": worker.job_id, "level": worker.idx, "task": worker.task}
        emit(JobEvent.LEVEL_STARTED, **started)

    def level_progress(
        self, worker_id: int, progress: Any, elapsed: float, timestep_limit: int, wallclock_limit: float
    ) -> None:
        timesteps = int(getattr(progress, "timesteps", 0) or 0)
        limit = int(getattr(progress, "timestep_limit", 0) or timestep_limit)
        wall = float(getattr(progress, "elapsed", elapsed) or elapsed)
        # Either budget ends the level, so progress is whichever is further along.
        fraction = max(timesteps / limit if limit else 0.0, wall / wallclock_limit)
        eta = getattr(progress, "eta_seconds", None)
        mean = getattr(progress, "mean_episode_reward", None)
        with self.database.session() as db:
            worker = db.get(Worker, worker_id)
            if worker is None or worker.status != LevelState.RUNNING:
                return
            worker.timesteps = timesteps
            worker.episodes = int(getattr(progress, "episodes", 0) or 0)
            worker.progress = round(min(1.0, max(0.0, fraction)), 4)
            worker.eta = None if eta is None else max(0.0, float(eta))
            worker.mean_episode_reward = None if mean is None else float(mean)

    def level_ended(
        self, worker_id: int, reason: StopReason | None, overran: bool, result: Any, error: str | None
    ) -> None:
        """Record a level's end: its result, or why it was stopped (``overran``: by the watchdog)."""
        score = getattr(result, "score", None) if result is not None else None
        episodes = getattr(result, "episodes", None) if result is not None else None
        timesteps = getattr(result, "timesteps", None) if result is not None else None
        ok = bool(getattr(result, "ok", False)) if result is not None else False
        if error is None and result is not None and not ok:
            error = getattr(result, "error", None) or "the evaluation did not succeed"
        with self.database.session() as db:
            worker = db.get(Worker, worker_id)
            assert worker is not None
            worker.eta = None
            worker.finished_at = now()
            if episodes is not None:
                worker.episodes = int(episodes)
            if timesteps is not None:
                worker.timesteps = int(timesteps)
            self._record_level_end(db, worker, reason, overran, score, ok, error)
            event, fields = _level_end_event(worker)
        emit(event, **fields)  # once it is committed

    def _record_level_end(
        self,
        db: Session,
        worker: Worker,
        reason: StopReason | None,
        overran: bool,
        score: Any,
        ok: bool,
        error: str | None,
    ) -> None:
        """The level's state after its end: interrupted (runs again), overran, cancelled, finished or failed."""
        if reason in (StopReason.SHUTDOWN, StopReason.UNWRITABLE) and not overran and not ok:
            # The server is stopping (or could not record a level) and stopped this level: it runs
            # again. A level whose run had already finished (ok) when the stop came keeps its result.
            worker.status = LevelState.PENDING
            worker.progress = None
            worker.finished_at = None
            worker.error = (
                "interrupted by a server shutdown; this level runs again"
                if reason is StopReason.SHUTDOWN
                else "interrupted: the server could not record another level of this job; this level runs again"
            )
            return
        if overran:
            job = db.get(Job, worker.job_id)
            wallclock = job.wallclock_limit if job else self.config.wallclock_limit
            worker.status = LevelState.FAILED
            worker.score = None if score is None else float(score)
            worker.error = f"stopped: the level overran its wall-clock budget of {int(wallclock)} s"
            return
        if reason is StopReason.USER:
            worker.status = LevelState.CANCELLED
            worker.score = None if score is None else float(score)
            worker.error = "cancelled by the team"
            return
        worker.score = None if score is None else float(score)
        worker.mean_episode_reward = worker.score
        worker.progress = 1.0 if ok else worker.progress
        worker.status = LevelState.FINISHED if ok else LevelState.FAILED
        worker.error = None if ok else (error or "the evaluation failed")

    # -- finishing --

    def finish(self, job_id: int, reason: StopReason | None, attempt_dir: Path) -> None:
        """All levels ended (or were stopped): score the job, or requeue it on a shutdown."""
        with self.database.session() as db:
            job = db.scalars(select(Job).where(Job.id == job_id).options(selectinload(Job.workers))).one()
            if reason in (StopReason.SHUTDOWN, StopReason.UNWRITABLE):
                ended = self.requeue(job, counts_as_resume=reason is StopReason.UNWRITABLE)
                document = None
            else:
                job.finished_at = now()
                job.runner = None
                if reason is StopReason.USER:
                    job.status = CANCELLED
                    job.error = "cancelled by the team"
                    for worker in job.workers:
                        if worker.status in (LevelState.PENDING, LevelState.RUNNING):
                            worker.status = LevelState.CANCELLED
                else:
                    self._score(job)
                document = job_document(job)
                ended = _job_event(job)
        emit(ended[0], **ended[1])
        if document is None:
            return
        try:
            write_private(attempt_dir / "summary.json", summary_json(document))
        except Exception:  # noqa: BLE001 - the result is committed; the file is a copy of it
            # The job's result is in the database already: a file that cannot be written (a full
            # disk) must not turn a finished job into a failed one.
            log.exception("job %s ended, but its summary.json could not be written", job_id)

    @staticmethod
    def _score(job: Job) -> None:
        """The contest's rule for a job whose levels all ended: ranked only when every level finished.

        A level that failed (the agent crashed, overran its budget, the evaluator broke) fails the
        job: it is not ranked, so the leaderboard keeps the team's last job that finished every
        level rather than a lower score caused by one crash, possibly the server's own fault (the
        team restarts it, or submits a fix). The levels keep their scores, for the team to see.
        """
        failed = [w for w in job.workers if w.status != LevelState.FINISHED]
        if all(w.score is None for w in job.workers):
            job.status, job.score = FAILED, None
            first = next((f"{w.task}: {w.error}" for w in failed if w.error), "no level finished an episode")
            job.error = f"no level produced a score: {first}"
        elif failed:
            job.status, job.score = FAILED, None
            first = failed[0]
            job.error = (
                f"{len(failed)} of {len(job.workers)} levels failed (first {first.task}: "
                f"{first.error or first.status}); the job is not ranked, the leaderboard keeps your last job "
                "that finished every level"
            )
        else:
            job.status, job.error = FINISHED, None
            job.score = contest_score([w.score for w in job.workers])

    def finish_failed(self, job_id: int, reason: StopReason | None, message: str) -> None:
        """The job could not be run (its image could not be pulled, an internal error)."""
        with self.database.session() as db:
            job = db.scalars(select(Job).where(Job.id == job_id).options(selectinload(Job.workers))).one()
            if reason in (StopReason.SHUTDOWN, StopReason.UNWRITABLE):
                ended = self.requeue(job, counts_as_resume=reason is StopReason.UNWRITABLE)
            else:
                job.status = CANCELLED if reason is StopReason.USER else FAILED
                job.error = message if job.status == FAILED else "cancelled by the team"
                job.finished_at = now()
                job.runner = None
                for worker in job.workers:
                    if worker.status in (LevelState.PENDING, LevelState.RUNNING):
                        worker.status = job.status
                        worker.error = worker.error or (message if job.status == FAILED else None)
                        worker.eta = None
                ended = _job_event(job)
        emit(ended[0], **ended[1])

    # -- recovery --

    def recover(self, live: set[int], *, startup: bool = False) -> list[int]:
        """Requeue (or fail) running jobs whose server is gone; returns their ids.

        ``live`` are the jobs this process runs right now (taken before the query: a job that ends
        after it is still seen as live, never as an orphan; a job claimed after it has a fresh
        heartbeat). This server's own orphans are recovered too: a job whose thread here ended without
        recording its end (the database write failed) has no heartbeat any more and would otherwise
        stay "running" until the next restart.
        """
        stale_before = now() - self.config.heartbeat_timeout
        recovered: list[int] = []
        events: list[tuple[JobEvent, dict[str, Any]]] = []
        with self.database.session() as db:
            query = select(Job).where(Job.status == RUNNING).options(selectinload(Job.workers))
            for job in db.scalars(query):
                mine = job.runner == self.instance
                stale = job.heartbeat_at is None or job.heartbeat_at < stale_before
                if mine and not startup and (job.id in live or not stale):
                    continue  # running here right now (or claimed a moment ago)
                if not (mine or stale):
                    continue  # another live server runs it
                events.append(self.requeue(job, counts_as_resume=True))
                recovered.append(job.id)
        for event, fields in events:
            emit(event, **fields)
        return recovered

    def adoptable(self, job_ids: set[int]) -> dict[int, int]:
        """Of ``job_ids``, the jobs whose level-runs a server may still adopt (running anywhere, or
        queued again after an interruption: same attempt), with their current attempt."""
        if not job_ids:
            return {}
        with self.database.session() as db:
            query = select(Job.id, Job.attempt).where(Job.id.in_(job_ids), Job.status.in_((RUNNING, QUEUED)))
            return {int(job_id): int(attempt) for job_id, attempt in db.execute(query)}

    def requeue_mine(self) -> None:
        """On a stop: jobs of this process whose levels did not end in time go back to the queue."""
        with self.database.session() as db:
            query = select(Job).where(Job.status == RUNNING, Job.runner == self.instance)
            events = [self.requeue(job, counts_as_resume=False) for job in db.scalars(query)]
        for event, fields in events:
            emit(event, **fields)

    def requeue(self, job: Job, *, counts_as_resume: bool) -> tuple[JobEvent, dict[str, Any]]:
        """Put an interrupted job back in the queue, keeping its finished levels; or end it for good.

        Returns the event to log once the caller's transaction is committed."""
        interrupted = [w for w in job.workers if w.status in (LevelState.RUNNING, LevelState.PENDING)]
        if job.cancel_requested:
            # The team asked to cancel before the server went down: honour it rather than re-run.
            job.status = CANCELLED
            job.finished_at = now()
            job.runner = None
            job.error = "cancelled by the team"
            for worker in interrupted:
                worker.status = LevelState.CANCELLED
                worker.eta = None
            return _job_event(job)
        if counts_as_resume and job.resumes >= self.config.max_resumes:
            job.status = FAILED
            job.finished_at = now()
            job.runner = None
            job.score = None
            times = "once" if job.resumes == 0 else f"{job.resumes + 1} times"
            job.error = (
                f"interrupted by a server restart {times}; it was not resumed again (max_resumes is "
                f"{self.config.max_resumes}); run it again with `contestkit jobs restart {job.id}`"
            )
            for worker in interrupted:
                worker.status = LevelState.FAILED
                worker.error = "interrupted by a server restart"
                worker.eta = None
            return _job_event(job)
        job.status = QUEUED
        job.runner = None
        job.heartbeat_at = None
        if counts_as_resume:
            job.resumes += 1
        for worker in interrupted:
            if worker.status == LevelState.RUNNING:
                worker.error = "interrupted by a server restart; this level runs again" if counts_as_resume else None
            worker.status = LevelState.PENDING
            worker.progress = None
            worker.mean_episode_reward = None
            worker.eta = None
        return _job_event(job, recovered=counts_as_resume)


def _level_end_event(worker: Worker) -> tuple[JobEvent, dict[str, Any]]:
    """The event of a level's end, from what was recorded for it."""
    event = {
        FINISHED: JobEvent.LEVEL_FINISHED,
        FAILED: JobEvent.LEVEL_FAILED,
        CANCELLED: JobEvent.LEVEL_CANCELLED,
        PENDING: JobEvent.LEVEL_INTERRUPTED,
    }.get(worker.status, JobEvent.LEVEL_FAILED)
    return event, {
        "job": worker.job_id, "level": worker.idx, "task": worker.task, "score": worker.score,
        "episodes": worker.episodes, "timesteps": worker.timesteps, "reason": worker.error,
    }  # fmt: skip


def _job_event(job: Job, *, recovered: bool = False) -> tuple[JobEvent, dict[str, Any]]:
    """The event of a job's new state (ended, or queued again after an interruption)."""
    if job.status == QUEUED:
        event = JobEvent.RECOVERED if recovered else JobEvent.REQUEUED
    else:
        event = {FINISHED: JobEvent.FINISHED, CANCELLED: JobEvent.CANCELLED}.get(job.status, JobEvent.FAILED)
    return event, {
        "job": job.id, "team": job.team.namespace, "attempt": job.attempt, "resumes": job.resumes or None,
        "score": job.score, "reason": job.error,
    }  # fmt: skip
