"""Jobs: starting, cancelling and restarting them, the queue that runs them, scores and the leaderboard.

A job evaluates one image on every level of the level set; each level is a *worker* row (the 2018
API's ``workers`` list). The queue lives in the database, not in memory, so that a server killed
mid-job loses nothing that finished:

- a level's result is committed the moment it ends (its score, episodes and results directory);
- a running job carries the id of the server process running it and a heartbeat; when that server
  starts again (or when the heartbeat of another server goes stale) the job goes back to the queue
  with its finished levels kept and its unfinished ones re-run from scratch (an agent's in-memory
  state cannot be resumed mid-level), up to ``max_resumes`` times; after that it is marked failed
  with the reason, never left "running" forever;
- a graceful stop (Ctrl-C, SIGTERM) puts running jobs back in the queue without counting a resume.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contestkit.errors import ContestkitError
from contestkit.scoring import contest_score
from contestkit.server import metrics
from contestkit.server.config import ServerConfig, write_private
from contestkit.server.db import (
    ACTIVE,
    CANCELLED,
    FAILED,
    FINISHED,
    PENDING,
    QUEUED,
    RUNNING,
    TERMINAL,
    Database,
    Job,
    Team,
    Worker,
    now,
)
from contestkit.server.evaluator import LevelRunner, LevelTask, pull_image

log = logging.getLogger("contestkit.server.jobs")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG_FORM = re.compile(rf"^(?:(?P<repo>{_COMPONENT}(?:/{_COMPONENT})*):)?(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DEFAULT_REPOSITORY = "agent"
TAG_MAX_LENGTH = 256  # the jobs.tag column
MAX_ID = 2**31 - 1  # ids are 32-bit integer columns (PostgreSQL's integer); larger ones cannot exist


class JobError(ContestkitError):
    """A refused job operation; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- image references ---------------------------------------------------------------------------


def image_for(config: ServerConfig, team: Team, tag: str) -> str:
    """The image a job evaluates: always inside the team's namespace of the contest registry.

    ``tag`` is ``[REPOSITORY:]TAG`` relative to the team's registry URL, as the 2018 client sent it
    (``simple-agent:v1``); a bare ``TAG`` means the repository ``agent``. The full reference
    ``HOST:PORT/<namespace>/REPOSITORY:TAG`` is accepted too. Anything pointing elsewhere is refused:
    this is what keeps one team from having another team's image evaluated under its name.
    """
    tag = (tag or "").strip()
    prefix = f"{config.registry}/{team.namespace}/"
    if tag.startswith(prefix):
        tag = tag[len(prefix) :]
    elif "/" in tag and ("." in tag.split("/", 1)[0] or ":" in tag.split("/", 1)[0]):
        raise JobError(
            403,
            f"The image '{tag}' is outside your registry namespace {config.registry}/{team.namespace}; "
            "push it there and submit its tag.",
        )
    match = _TAG_FORM.match(tag)
    if not match:
        raise JobError(
            422,
            f"'{tag}' is not an image tag: use TAG or REPOSITORY:TAG (lower-case repository, tag of letters, "
            "digits, '_', '.', '-').",
        )
    repository = match.group("repo") or DEFAULT_REPOSITORY
    return f"{prefix}{repository}:{match.group('tag')}"


# -- what the API shows --------------------------------------------------------------------------


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    """The 2018 client tests ``'score' in job``: absent keys, not nulls, mean "not known yet"."""
    return {key: value for key, value in document.items() if value is not None}


def worker_document(worker: Worker) -> dict[str, Any]:
    return _drop_none(
        {
            "task": worker.task,
            "state": worker.status,
            "eta": None if worker.eta is None else round(worker.eta, 1),
            "progress": worker.progress,
            "score": worker.score,
            "error": worker.error,
            "game": worker.game,
            "level": worker.state,
            "timesteps": worker.timesteps,
            "episodes": worker.episodes,
        }
    )


def job_document(job: Job) -> dict[str, Any]:
    return _drop_none(
        {
            "id": job.id,
            "status": job.status,
            "score": job.score,
            "error": job.error,
            "tag": job.tag,
            "image": job.image,
            "digest": job.digest,
            "created": job.created_at,
            "started": job.started_at,
            "finished": job.finished_at,
            "attempt": job.attempt,
            "resumes": job.resumes or None,
            "cancel_requested": True if job.cancel_requested and job.status in ACTIVE else None,
            "workers": [worker_document(w) for w in job.workers],
        }
    )


# -- operations the API performs on behalf of a team ---------------------------------------------


def _jobs_of(team_id: int):  # type: ignore[no-untyped-def]
    return select(Job).where(Job.team_id == team_id).options(selectinload(Job.workers))


def latest_job(session: Session, team_id: int) -> Job:
    # The most recently queued: a restarted job is "the latest" again, as the team expects.
    job = session.scalars(_jobs_of(team_id).order_by(Job.queued_at.desc(), Job.id.desc()).limit(1)).first()
    if job is None:
        raise JobError(404, "Your team has no job yet; submit one with `contestkit submit`.")
    return job


def get_job(session: Session, team_id: int, job_id: int) -> Job:
    """A job of this team; another team's job is "not found", so ids do not leak what others run.

    An id no job can have (below 1, beyond a 32-bit integer) is "not found" too, without asking the
    database, which would refuse to compare it (SQLite: OverflowError, PostgreSQL: out of range)."""
    job = None if not 1 <= job_id <= MAX_ID else session.scalars(_jobs_of(team_id).where(Job.id == job_id)).first()
    if job is None:
        raise JobError(404, f"Your team has no job {job_id}; `contestkit jobs --all` lists yours.")
    return job


def all_jobs(session: Session, team_id: int) -> list[Job]:
    return list(session.scalars(_jobs_of(team_id).order_by(Job.id.desc())).all())


def _active_job(session: Session, team_id: int) -> Job | None:
    return session.scalars(select(Job).where(Job.team_id == team_id, Job.status.in_(ACTIVE))).first()


def _busy(job: Job) -> JobError:
    return JobError(
        409,
        f"Your team already has job {job.id} {job.status}; one job runs at a time. Wait for it "
        f"(`contestkit jobs {job.id} --watch`) or cancel it (`contestkit jobs cancel {job.id}`).",
    )


def start_job(database: Database, config: ServerConfig, team_id: int, tag: str, digest: str | None = None) -> Job:
    """Queue a job for ``tag`` with one worker per level; refused while the team has an active job."""
    if len(tag) > TAG_MAX_LENGTH:
        raise JobError(
            422, f"The image tag is {len(tag)} characters long; use a tag of at most {TAG_MAX_LENGTH} characters."
        )
    if digest is not None and not _DIGEST.match(digest):
        raise JobError(422, f"'{digest}' is not an image digest (sha256:<64 hex digits>).")
    levels = config.levels()
    with database.session() as session:
        team = session.get(Team, team_id)
        assert team is not None
        image = image_for(config, team, tag)
        active = _active_job(session, team_id)
        if active is not None:
            raise _busy(active)
        stamp = now()
        job = Job(
            team_id=team_id,
            tag=tag,
            image=image,
            digest=digest,
            status=QUEUED,
            created_at=stamp,
            queued_at=stamp,
            timestep_limit=config.timestep_limit,
            wallclock_limit=config.wallclock_limit,
            workers=[Worker(idx=i, game=lv.game, state=lv.state, status=PENDING) for i, lv in enumerate(levels)],
        )
        session.add(job)
        try:
            session.flush()
        except IntegrityError:
            # Another request of the same team won the race; the unique partial index refused us.
            session.rollback()
            active = _active_job(session, team_id)
            raise _busy(active) if active else JobError(409, "Your team already has an active job.") from None
        job_id = job.id
    with database.session() as session:
        return get_job(session, team_id, job_id)


def kill_job(database: Database, team_id: int, job_id: int | None = None) -> Job:
    """Cancel the team's active job: a queued one at once, a running one as soon as its levels stop."""
    with database.session() as session:
        if job_id is None:
            job = _active_job(session, team_id)
            if job is None:
                raise JobError(404, "Your team has no queued or running job to cancel.")
        else:
            job = get_job(session, team_id, job_id)
            if job.status not in ACTIVE:
                raise JobError(409, f"Job {job.id} is already {job.status}; there is nothing to cancel.")
        job_id = job.id
        # Conditional on the status, so that a job the queue claims at this very moment is not
        # marked cancelled while it runs: then it gets a cancel request instead.
        cancelled = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == QUEUED)
            .values(status=CANCELLED, finished_at=now(), error="cancelled by the team before it started")
        )
        if cancelled.rowcount == 1:  # type: ignore[attr-defined]
            session.execute(
                update(Worker).where(Worker.job_id == job_id, Worker.status.not_in(TERMINAL)).values(status=CANCELLED)
            )
        else:
            session.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(cancel_requested=1))
    with database.session() as session:
        return get_job(session, team_id, job_id)


def restart_job(database: Database, config: ServerConfig, team_id: int, job_id: int | None = None) -> Job:
    """Run a finished, failed or cancelled job again from scratch, as a new attempt with the same id.

    The image is the one evaluated before (by digest when known), so a restart re-evaluates the same
    submission; its earlier results stay under ``attempt-<n>``.

    The job is requeued by one UPDATE that is conditional on its status still being a terminal one, so
    of two restarts racing for the same job exactly one wins (the other is a 409), and a restart racing
    a new submission of the team ends in a 409 from the database's one-active-job index, not a 500.
    """
    levels = config.levels()
    with database.session() as session:
        job = latest_job(session, team_id) if job_id is None else get_job(session, team_id, job_id)
        job_id = job.id
        if job.status in ACTIVE:
            raise JobError(
                409, f"Job {job_id} is still {job.status}; cancel it first (`contestkit jobs cancel {job_id}`)."
            )
        active = _active_job(session, team_id)
        if active is not None:
            raise _busy(active)
        # From here on only statements: nothing loaded above may be flushed over what they write.
        session.expunge_all()
        try:
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(TERMINAL))
                .values(
                    status=QUEUED,
                    score=None,
                    error=None,
                    started_at=None,
                    finished_at=None,
                    queued_at=now(),
                    attempt=func.coalesce(Job.attempt, 1) + 1,
                    resumes=0,
                    cancel_requested=0,
                    runner=None,
                    heartbeat_at=None,
                    timestep_limit=config.timestep_limit,
                    wallclock_limit=config.wallclock_limit,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                # Another request restarted (or the queue claimed) this job since we read it.
                raise JobError(
                    409,
                    f"Job {job_id} was restarted by another request at the same moment; "
                    f"follow it with `contestkit jobs {job_id} --watch`.",
                )
            session.execute(delete(Worker).where(Worker.job_id == job_id).execution_options(synchronize_session=False))
            session.add_all(
                Worker(job_id=job_id, idx=i, game=lv.game, state=lv.state, status=PENDING)
                for i, lv in enumerate(levels)
            )
            session.flush()
        except IntegrityError:
            # A submission of the same team won the race; the unique partial index refused us.
            session.rollback()
            active = _active_job(session, team_id)
            raise _busy(active) if active else JobError(409, "Your team already has an active job.") from None
    with database.session() as session:
        return get_job(session, team_id, job_id)


def leaderboard(session: Session) -> list[dict[str, Any]]:
    """Each team's latest finished job, best score first (ties: whoever finished first)."""
    rows = session.execute(
        select(Team.name, Job.id, Job.score, Job.finished_at)
        .join(Job, Job.team_id == Team.id)
        .where(Job.status == FINISHED, Job.score.is_not(None))
        # Latest = finished last: a restarted job that finished after a newer one is the latest.
        .order_by(Team.id, Job.finished_at.desc().nulls_last(), Job.id.desc())
    ).all()
    latest: dict[str, Any] = {}
    for name, job_id, score, finished in rows:
        latest.setdefault(name, {"name": name, "score": score, "job": job_id, "finished": finished})
    return sorted(latest.values(), key=lambda row: (-row["score"], row["finished"] or 0.0))


# -- the queue ---------------------------------------------------------------------------------


@dataclass
class _LevelWatch:
    cancel: threading.Event
    started: float
    deadline: float
    overran: bool = False


@dataclass
class _JobControl:
    job_id: int
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None  # "user", "shutdown"
    levels: dict[int, _LevelWatch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
            self.cancel.set()
            for watch in self.levels.values():
                watch.cancel.set()


def default_instance(config: ServerConfig) -> str:
    """Who runs a job: this host and data directory (a lock keeps one server per data directory)."""
    return f"{socket.gethostname()}:{config.data_dir}"[:128]


class CpusetPool:
    """The host's CPU sets (server.yaml ``cpusets``), lent to running levels one each.

    Why: levels evaluated at once on one host otherwise share CPUs, and a level's wall-clock
    budget (and its timesteps per second) would then depend on what its neighbours run. A level
    waits, still pending, until a set is free, so the sets also cap how many levels run at once.
    """

    def __init__(self, sets: list[str]) -> None:
        self._limited = bool(sets)
        self._free: queue.Queue[str] = queue.Queue()
        for text in sets:
            self._free.put(text)

    @contextmanager
    def lend(self, cancel: threading.Event, poll: float = 0.5) -> Iterator[str | None]:
        """A free set for the ``with`` block, waiting for one.

        None when the host configured no sets, and also when ``cancel`` came first: callers
        check ``cancel`` before starting anything.
        """
        lent: str | None = None
        while self._limited and lent is None and not cancel.is_set():
            try:
                lent = self._free.get(timeout=poll)
            except queue.Empty:
                continue
        try:
            yield lent
        finally:
            if lent is not None:
                self._free.put(lent)


class JobRunner:
    """Claims queued jobs from the database and evaluates their levels in threads.

    One thread ("monitor") keeps the heartbeat, notices cancel requests made through another server
    process, stops levels that overrun their wall-clock budget, and recovers jobs whose server died.
    """

    def __init__(
        self,
        database: Database,
        config: ServerConfig,
        level_runner: LevelRunner,
        *,
        instance: str | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.config = config
        self.level_runner = level_runner
        self.instance = instance or default_instance(config)
        self.poll_seconds = poll_seconds
        self._controls: dict[int, _JobControl] = {}
        self._controls_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._started = False
        self._cpusets = CpusetPool(config.cpusets)

    # -- lifecycle --

    def start(self) -> None:
        """Recover what a previous run of this server left running, then start claiming jobs."""
        self.recover(startup=True)
        self._started = True
        for target, name in ((self._claim_loop, "contestkit-claim"), (self._monitor_loop, "contestkit-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, stop running levels, and put their jobs back in the queue for the next start."""
        self._stop.set()
        self._wake.set()
        with self._controls_lock:
            controls = list(self._controls.values())
        for control in controls:
            control.stop("shutdown")
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        # Jobs whose level runner did not return in time: requeue them in the database directly.
        with self.database.session() as session:
            for job in session.scalars(select(Job).where(Job.status == RUNNING, Job.runner == self.instance)):
                self._requeue(job, counts_as_resume=False)

    def wake(self) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    def cancel(self, job_id: int) -> None:
        """Stop a running job of this process at once (the API already set cancel_requested)."""
        with self._controls_lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.stop("user")

    # -- recovery --

    def recover(self, *, startup: bool = False) -> list[int]:
        """Requeue (or fail) running jobs whose server is gone; returns their ids.

        Also this server's own orphans: a job whose thread here has ended without recording its end
        (the database write failed) has no control any more and no heartbeat; it would otherwise stay
        "running" until the next restart.
        """
        # Taken before the query: a job that ends after it is still seen as live here, never as an
        # orphan; a job claimed after it has a fresh heartbeat.
        with self._controls_lock:
            live = set(self._controls)
        stale_before = now() - self.config.heartbeat_timeout
        recovered: list[int] = []
        with self.database.session() as session:
            query = select(Job).where(Job.status == RUNNING).options(selectinload(Job.workers))
            for job in session.scalars(query):
                mine = job.runner == self.instance
                stale = job.heartbeat_at is None or job.heartbeat_at < stale_before
                if mine and not startup and (job.id in live or not stale):
                    continue  # running here right now (or claimed a moment ago)
                if not (mine or stale):
                    continue  # another live server runs it
                self._requeue(job, counts_as_resume=True)
                recovered.append(job.id)
        if recovered:
            log.warning("recovered interrupted jobs %s", recovered)
            self._wake.set()
        return recovered

    def _requeue(self, job: Job, *, counts_as_resume: bool) -> None:
        """Put an interrupted job back in the queue, keeping its finished levels; or end it for good."""
        interrupted = [w for w in job.workers if w.status in (RUNNING, PENDING)]
        if job.cancel_requested:
            # The team asked to cancel before the server went down: honour it rather than re-run.
            job.status = CANCELLED
            job.finished_at = now()
            job.runner = None
            job.error = "cancelled by the team"
            for worker in interrupted:
                worker.status = CANCELLED
                worker.eta = None
            return
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
                worker.status = FAILED
                worker.error = "interrupted by a server restart"
                worker.eta = None
            log.warning("job %s failed after %s interruptions", job.id, job.resumes + 1)
            return
        job.status = QUEUED
        job.runner = None
        job.heartbeat_at = None
        if counts_as_resume:
            job.resumes += 1
        for worker in interrupted:
            if worker.status == RUNNING:
                worker.error = "interrupted by a server restart; this level runs again" if counts_as_resume else None
            worker.status = PENDING
            worker.progress = None
            worker.eta = None

    # -- claiming --

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self._running_count() < self.config.parallel_jobs and not self._stop.is_set():
                    job_id = self._claim()
                    if job_id is None:
                        break
                    control = _JobControl(job_id)
                    with self._controls_lock:
                        self._controls[job_id] = control
                    thread = threading.Thread(target=self._run_job, args=(control,), name=f"job-{job_id}", daemon=True)
                    thread.start()
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            except Exception:  # noqa: BLE001 - the queue must survive a database hiccup
                log.exception("claiming a job failed; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _running_count(self) -> int:
        with self._controls_lock:
            return len(self._controls)

    def _claim(self) -> int | None:
        with self.database.session() as session:
            candidates = session.scalars(
                select(Job.id).where(Job.status == QUEUED).order_by(Job.queued_at, Job.id).limit(5)
            ).all()
            for job_id in candidates:
                stamp = now()
                result = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == QUEUED)
                    .values(status=RUNNING, runner=self.instance, heartbeat_at=stamp, cancel_requested=0)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    job = session.get(Job, job_id)
                    assert job is not None
                    if job.started_at is None:
                        job.started_at = stamp
                    return job_id
        return None

    # -- the monitor --

    def _monitor_loop(self) -> None:
        last_beat = 0.0
        last_recover = time.monotonic()
        while not self._stop.wait(0.5):
            try:
                with self._controls_lock:
                    controls = dict(self._controls)
                # Wall-clock watchdog: a level that overruns its budget (plus grace) is stopped.
                mono = time.monotonic()
                for control in controls.values():
                    with control.lock:
                        for watch in control.levels.values():
                            if mono > watch.deadline and not watch.cancel.is_set():
                                watch.overran = True
                                watch.cancel.set()
                if controls:
                    with self.database.session() as session:
                        ids = list(controls)
                        for job_id in session.scalars(select(Job.id).where(Job.id.in_(ids), Job.cancel_requested == 1)):
                            controls[job_id].stop("user")
                        if time.time() - last_beat >= self.config.heartbeat_seconds:
                            session.execute(
                                update(Job)
                                .where(Job.id.in_(ids), Job.runner == self.instance, Job.status == RUNNING)
                                .values(heartbeat_at=now())
                            )
                            last_beat = time.time()
                if mono - last_recover >= max(self.config.heartbeat_timeout / 2, 1.0):
                    last_recover = mono
                    self.recover()
            except Exception:  # noqa: BLE001
                log.exception("job monitor tick failed; continuing")

    # -- running a job --

    def _run_job(self, control: _JobControl) -> None:
        job_id = control.job_id
        try:
            self._evaluate(control)
        except Exception as exc:  # noqa: BLE001 - whatever happens, the job must not stay "running"
            message = str(exc) if isinstance(exc, ContestkitError) else f"internal error: {type(exc).__name__}: {exc}"
            if not isinstance(exc, ContestkitError):
                log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            try:
                self._finish_failed(control, message)
            except Exception:  # noqa: BLE001 - e.g. the database is down; recover() picks the job up
                log.exception("could not record the end of job %s; the monitor puts it back in the queue", job_id)
        finally:
            with self._controls_lock:
                # A restart may already have been claimed under the same id: leave its control alone.
                if self._controls.get(job_id) is control:
                    del self._controls[job_id]
            self._wake.set()

    def _attempt_dir(self, job: Job) -> Path:
        return self.config.jobs_dir / str(job.id) / f"attempt-{job.attempt}"

    def _evaluate(self, control: _JobControl) -> None:
        with self.database.session() as session:
            job = session.get(Job, control.job_id)
            assert job is not None
            image, digest, attempt_dir = job.image, job.digest, self._attempt_dir(job)
            timestep_limit, wallclock_limit = job.timestep_limit, job.wallclock_limit
            pending = [(w.id, w.idx, w.game, w.state) for w in job.workers if w.status == PENDING]
        reference = f"{image.rsplit(':', 1)[0]}@{digest}" if digest else image
        if self.config.pull_images and not control.cancel.is_set():
            reference = pull_image(
                reference,
                username=self.config.evaluator_username,
                password=self.config.evaluator_registry_password,
            )
            if "@" in reference:
                with self.database.session() as session:
                    job = session.get(Job, control.job_id)
                    assert job is not None
                    job.digest = reference.split("@", 1)[1]
        attempt_dir.mkdir(parents=True, exist_ok=True)

        def run(item: tuple[int, int, str, str]) -> None:
            worker_id, idx, game, state = item
            with self._cpusets.lend(control.cancel) as cpus:
                if control.cancel.is_set():
                    return
                run_level(worker_id, idx, game, state, cpus)

        def run_level(worker_id: int, idx: int, game: str, state: str, cpus: str | None) -> None:
            task = LevelTask(
                job_id=control.job_id,
                index=idx,
                game=game,
                state=state,
                image=reference,
                runtime=self.config.runtime,
                timestep_limit=timestep_limit,
                wallclock_limit=wallclock_limit,
                seed=self.config.seed + idx,
                record=self.config.record,
                results_dir=_fresh_dir(attempt_dir / _level_dir_name(idx, game, state)),
                cpuset=cpus,
            )
            self._run_level(control, worker_id, task)

        with ThreadPoolExecutor(
            max_workers=self.config.parallel_levels, thread_name_prefix=f"job-{control.job_id}"
        ) as pool:
            list(pool.map(run, pending))
        self._finish(control, attempt_dir)

    def _run_level(self, control: _JobControl, worker_id: int, task: LevelTask) -> None:
        level_cancel = threading.Event()
        started = time.monotonic()
        watch = _LevelWatch(
            cancel=level_cancel,
            started=started,
            deadline=started + task.wallclock_limit + self.config.budget_grace_seconds,
        )
        with control.lock:
            control.levels[worker_id] = watch
            if control.cancel.is_set():
                level_cancel.set()
        with self.database.session() as session:
            worker = session.get(Worker, worker_id)
            assert worker is not None
            worker.status = RUNNING
            worker.started_at = now()
            worker.error = None
            worker.progress = 0.0
            worker.results_dir = str(task.results_dir)

        last_write = [0.0]

        def on_progress(progress: Any) -> None:
            mono = time.monotonic()
            if mono - last_write[0] < 1.0:
                return
            last_write[0] = mono
            try:
                self._write_progress(worker_id, task, progress, mono - started)
            except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
                log.exception("could not record progress of worker %s", worker_id)

        result: Any = None
        error: str | None = None
        try:
            result = self.level_runner(task, on_progress, level_cancel)
        except ContestkitError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one level's failure must not sink the others
            log.error("level %s of job %s crashed:\n%s", task.index, task.job_id, traceback.format_exc())
            error = f"evaluator error: {type(exc).__name__}: {exc}"
        finally:
            with control.lock:
                control.levels.pop(worker_id, None)
        self._record_level(control, worker_id, watch, result, error)
        metrics.level_ended(time.monotonic() - started, result, reason=control.reason, overran=watch.overran)

    def _write_progress(self, worker_id: int, task: LevelTask, progress: Any, elapsed: float) -> None:
        timesteps = int(getattr(progress, "timesteps", 0) or 0)
        limit = int(getattr(progress, "timestep_limit", 0) or task.timestep_limit)
        wall = float(getattr(progress, "elapsed", elapsed) or elapsed)
        # Either budget ends the level, so progress is whichever is further along.
        fraction = max(timesteps / limit if limit else 0.0, wall / task.wallclock_limit)
        eta = getattr(progress, "eta_seconds", None)
        with self.database.session() as session:
            worker = session.get(Worker, worker_id)
            if worker is None or worker.status != RUNNING:
                return
            worker.timesteps = timesteps
            worker.episodes = int(getattr(progress, "episodes", 0) or 0)
            worker.progress = round(min(1.0, max(0.0, fraction)), 4)
            worker.eta = None if eta is None else max(0.0, float(eta))

    def _record_level(
        self, control: _JobControl, worker_id: int, watch: _LevelWatch, result: Any, error: str | None
    ) -> None:
        score = getattr(result, "score", None) if result is not None else None
        episodes = getattr(result, "episodes", None) if result is not None else None
        timesteps = getattr(result, "timesteps", None) if result is not None else None
        ok = bool(getattr(result, "ok", False)) if result is not None else False
        if error is None and result is not None and not ok:
            error = getattr(result, "error", None) or "the evaluation did not succeed"
        with self.database.session() as session:
            worker = session.get(Worker, worker_id)
            assert worker is not None
            worker.eta = None
            worker.finished_at = now()
            if episodes is not None:
                worker.episodes = int(episodes)
            if timesteps is not None:
                worker.timesteps = int(timesteps)
            if control.reason == "shutdown" and not watch.overran and not ok:
                # The server is stopping and stopped this level: it runs again after the restart. A
                # level whose runner had already finished (ok) when the shutdown came keeps its result.
                worker.status = PENDING
                worker.progress = None
                worker.finished_at = None
                worker.error = "interrupted by a server shutdown; this level runs again"
                return
            if watch.overran:
                worker.status = FAILED
                worker.score = None if score is None else float(score)
                worker.error = f"stopped: the level overran its wall-clock budget of {int(self._wallclock(control))} s"
                return
            if control.reason == "user":
                worker.status = CANCELLED
                worker.score = None if score is None else float(score)
                worker.error = "cancelled by the team"
                return
            worker.score = None if score is None else float(score)
            worker.progress = 1.0 if ok else worker.progress
            worker.status = FINISHED if ok else FAILED
            worker.error = None if ok else (error or "the evaluation failed")

    def _wallclock(self, control: _JobControl) -> float:
        with self.database.session() as session:
            job = session.get(Job, control.job_id)
            return job.wallclock_limit if job else self.config.wallclock_limit

    def _finish(self, control: _JobControl, attempt_dir: Path) -> None:
        with self.database.session() as session:
            job = session.scalars(select(Job).where(Job.id == control.job_id).options(selectinload(Job.workers))).one()
            if control.reason == "shutdown":
                self._requeue(job, counts_as_resume=False)
                return
            job.finished_at = now()
            job.runner = None
            if control.reason == "user":
                job.status = CANCELLED
                job.error = "cancelled by the team"
                for worker in job.workers:
                    if worker.status in (PENDING, RUNNING):
                        worker.status = CANCELLED
            else:
                scores = [w.score for w in job.workers]
                if any(s is not None for s in scores):
                    job.status = FINISHED
                    job.score = contest_score(scores)
                    failed = [w for w in job.workers if w.status != FINISHED]
                    job.error = (
                        f"{len(failed)} of {len(job.workers)} levels did not finish cleanly; they count with "
                        "the episodes they finished (0 when none)"
                        if failed
                        else None
                    )
                else:
                    job.status = FAILED
                    first = next((w.error for w in job.workers if w.error), "no level finished an episode")
                    job.error = f"no level produced a score: {first}"
            document = job_document(job)
        try:
            write_private(attempt_dir / "summary.json", _json(document))
        except Exception:  # noqa: BLE001 - the result is committed; the file is a copy of it
            # The job's result is in the database already: a file that cannot be written (a full
            # disk) must not turn a finished job into a failed one.
            log.exception("job %s ended, but its summary.json could not be written", control.job_id)

    def _finish_failed(self, control: _JobControl, message: str) -> None:
        with self.database.session() as session:
            job = session.scalars(select(Job).where(Job.id == control.job_id).options(selectinload(Job.workers))).one()
            if control.reason == "shutdown":
                self._requeue(job, counts_as_resume=False)
                return
            job.status = CANCELLED if control.reason == "user" else FAILED
            job.error = message if job.status == FAILED else "cancelled by the team"
            job.finished_at = now()
            job.runner = None
            for worker in job.workers:
                if worker.status in (PENDING, RUNNING):
                    worker.status = job.status
                    worker.error = worker.error or (message if job.status == FAILED else None)
                    worker.eta = None


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def _level_dir_name(idx: int, game: str, state: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{game}-{state}")
    return f"{idx:02d}-{safe}"


def _fresh_dir(path: Path) -> Path:
    """A new, empty results directory; a previous partial one (an interrupted run) is kept beside it."""
    if path.exists() and any(path.iterdir()):
        n = 1
        while path.with_name(f"{path.name}.interrupted-{n}").exists():
            n += 1
        shutil.move(str(path), str(path.with_name(f"{path.name}.interrupted-{n}")))
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = [
    "JobError",
    "JobRunner",
    "all_jobs",
    "get_job",
    "image_for",
    "job_document",
    "kill_job",
    "latest_job",
    "leaderboard",
    "restart_job",
    "start_job",
]
