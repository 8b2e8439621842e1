"""Operations on jobs that the API performs for a team: start, cancel, restart, read, the leaderboard.

Why here: these are the only places where a request changes a job (the queue and the scheduler take
over from "queued"). Each is one short transaction whose conditions (one active job per team, a
restart racing another) are enforced by the database itself, so two server processes or two racing
requests cannot both win. Refusals are ``errors.Refused`` subclasses; the app turns them into HTTP
statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contestkit.containers import imageref
from contestkit.env.levellist import LevelName
from contestkit.server.config import ServerConfig
from contestkit.server.contest import phases, quotas
from contestkit.server.errors import Conflict, Forbidden, Invalid, NotFound
from contestkit.server.events import JobEvent, emit
from contestkit.server.storage.db import (
    ACTIVE,
    CANCELLED,
    QUEUED,
    RUNNING,
    TERMINAL,
    Database,
    Job,
    Team,
    Worker,
    now,
)
from contestkit.states import TERMINAL_LEVEL_STATES, LevelState

DEFAULT_REPOSITORY = "agent"
TAG_MAX_LENGTH = 256  # the jobs.tag column
MAX_ID = 2**31 - 1  # ids are 32-bit integer columns (PostgreSQL's integer); larger ones cannot exist


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
    elif "/" in tag and imageref.is_registry(tag.split("/", 1)[0]):
        raise Forbidden(
            f"The image '{tag}' is outside your registry namespace {config.registry}/{team.namespace}; "
            "push it there and submit its tag.",
        )
    parsed = imageref.parse_path_and_tag(tag)
    if parsed is None:
        raise Invalid(
            f"'{tag}' is not an image tag: use TAG or REPOSITORY:TAG (lower-case repository, tag of letters, "
            "digits, '_', '.', '-').",
        )
    repository, bare_tag = parsed
    return f"{prefix}{repository or DEFAULT_REPOSITORY}:{bare_tag}"


# -- operations the API performs on behalf of a team ---------------------------------------------


def _jobs_of(team_id: int):  # type: ignore[no-untyped-def]
    # A team sees its leaderboard jobs only: a final job names the hidden levels (see ``final``).
    return (
        select(Job)
        .where(Job.team_id == team_id, Job.phase == phases.PhaseKind.LEADERBOARD.value)
        .options(selectinload(Job.workers))
    )


def latest_job(db: Session, team_id: int) -> Job:
    # The most recently queued: a restarted job is "the latest" again, as the team expects.
    job = db.scalars(_jobs_of(team_id).order_by(Job.queued_at.desc(), Job.id.desc()).limit(1)).first()
    if job is None:
        raise NotFound("Your team has no job yet; submit one with `contestkit submit`.")
    return job


def get_job(db: Session, team_id: int, job_id: int) -> Job:
    """A job of this team; another team's job is "not found", so ids do not leak what others run.

    An id no job can have (below 1, beyond a 32-bit integer) is "not found" too, without asking the
    database, which would refuse to compare it (SQLite: OverflowError, PostgreSQL: out of range)."""
    job = None if not 1 <= job_id <= MAX_ID else db.scalars(_jobs_of(team_id).where(Job.id == job_id)).first()
    if job is None:
        raise NotFound(f"Your team has no job {job_id}; `contestkit jobs --all` lists yours.")
    return job


def all_jobs(db: Session, team_id: int, *, limit: int | None = None, before: int | None = None) -> list[Job]:
    """The team's jobs, newest first; ``limit`` and ``before`` (a job id) page through them.

    Paged by id rather than by offset so that a job started while a client pages does not shift
    the pages under it (each page is "the next ``limit`` jobs older than the last one seen")."""
    query = _jobs_of(team_id)
    if before is not None:
        query = query.where(Job.id < min(before, MAX_ID + 1))
    query = query.order_by(Job.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(db.scalars(query).all())


def _active_job(db: Session, team_id: int) -> Job | None:
    return db.scalars(
        select(Job).where(
            Job.team_id == team_id, Job.status.in_(ACTIVE), Job.phase == phases.PhaseKind.LEADERBOARD.value
        )
    ).first()


def _busy(job: Job) -> Conflict:
    return Conflict(
        f"Your team already has job {job.id} {job.status}; one job runs at a time. Wait for it "
        f"(`contestkit jobs {job.id} --watch`) or cancel it (`contestkit jobs cancel {job.id}`).",
    )


def level_rows(levels: Sequence[LevelName], *, job_id: int | None = None) -> list[Worker]:
    """A job's level rows, one pending ``Worker`` per level in the level set's order (``idx`` 0, 1...)."""
    return [
        Worker(job_id=job_id, idx=i, game=lv.game, state=lv.state, status=LevelState.PENDING)
        for i, lv in enumerate(levels)
    ]


def new_job(
    config: ServerConfig,
    team_id: int,
    *,
    tag: str,
    image: str,
    digest: str | None,
    levels: Sequence[LevelName],
    at: float,
    phase: phases.PhaseKind = phases.PhaseKind.LEADERBOARD,
    priority: int = 0,
    source_job_id: int | None = None,
) -> Job:
    """A queued job with its level rows, under the server's current limits (not added to a session yet).

    Why one function: a team's submission (``start_job``) and the final (``final.start``) create jobs
    alike, and a job whose rows or limits were made differently in one of them would be scored differently.
    """
    return Job(
        team_id=team_id,
        tag=tag,
        image=image,
        digest=digest,
        status=QUEUED,
        created_at=at,
        queued_at=at,
        timestep_limit=config.timestep_limit,
        wallclock_limit=config.wallclock_limit,
        phase=phase.value,
        priority=priority,
        source_job_id=source_job_id,
        workers=level_rows(levels),
    )


def check_can_start(db: Session, config: ServerConfig, team_id: int, at: float) -> None:
    """Refuse a new submission as ``start_job`` would: outside the window, while the team has a job
    queued or running, or over its quota. ``GET /rest/job/check`` asks this before a push, so that
    ``contestkit submit`` refuses in a second with the server's own sentence, not after the upload."""
    phases.check_window(db, config, at)
    active = _active_job(db, team_id)
    if active is not None:
        raise _busy(active)
    quotas.check_quota(db, team_id, phases.contest_plan(config).leaderboard.quota, at)


def start_job(
    database: Database,
    config: ServerConfig,
    team_id: int,
    tag: str,
    digest: str | None = None,
    *,
    clock: phases.Clock = now,
) -> Job:
    """Queue a job for ``tag`` with one worker per level; refused while the team has an active job,
    outside the submission window and over the team's quota (``clock``: tests inject the time)."""
    if len(tag) > TAG_MAX_LENGTH:
        raise Invalid(f"The image tag is {len(tag)} characters long; use a tag of at most {TAG_MAX_LENGTH} characters.")
    if digest is not None and not imageref.is_digest(digest):
        raise Invalid(f"'{digest}' is not an image digest (sha256:<64 hex digits>).")
    levels = phases.levels_of(config, phases.PhaseKind.LEADERBOARD)
    with database.session() as db:
        team = db.get(Team, team_id)
        assert team is not None
        image = image_for(config, team, tag)
        stamp = clock()
        check_can_start(db, config, team_id, stamp)
        job = new_job(config, team_id, tag=tag, image=image, digest=digest, levels=levels, at=stamp)
        db.add(job)
        try:
            db.flush()
        except IntegrityError:
            # Another request of the same team won the race; the unique partial index refused us.
            db.rollback()
            active = _active_job(db, team_id)
            raise _busy(active) if active else Conflict("Your team already has an active job.") from None
        job_id = job.id
    emit(JobEvent.QUEUED, job=job_id, team=team.namespace, attempt=1, image=image, digest=digest)
    with database.session() as db:
        return get_job(db, team_id, job_id)


def kill_job(database: Database, team_id: int, job_id: int | None = None) -> Job:
    """Cancel the team's active job: a queued one at once, a running one as soon as its levels stop."""
    with database.session() as db:
        if job_id is None:
            job = _active_job(db, team_id)
            if job is None:
                raise NotFound("Your team has no queued or running job to cancel.")
        else:
            job = get_job(db, team_id, job_id)
            if job.status not in ACTIVE:
                raise Conflict(f"Job {job.id} is already {job.status}; there is nothing to cancel.")
        job_id = job.id
        cancel(db, job_id, "cancelled by the team before it started")
    with database.session() as db:
        return get_job(db, team_id, job_id)


def cancel(db: Session, job_id: int, why: str) -> None:
    """Cancel an active job: a queued one at once, a running one as soon as its levels stop."""
    # Conditional on the status, so that a job the queue claims at this very moment is not
    # marked cancelled while it runs: then it gets a cancel request instead.
    cancelled = db.execute(
        update(Job).where(Job.id == job_id, Job.status == QUEUED).values(status=CANCELLED, finished_at=now(), error=why)
    )
    if cancelled.rowcount == 1:  # type: ignore[attr-defined]
        db.execute(
            update(Worker)
            .where(Worker.job_id == job_id, Worker.status.not_in(TERMINAL_LEVEL_STATES))
            .values(status=LevelState.CANCELLED)
        )
    else:
        db.execute(update(Job).where(Job.id == job_id, Job.status == RUNNING).values(cancel_requested=1))


def restart_job(
    database: Database, config: ServerConfig, team_id: int, job_id: int | None = None, *, clock: phases.Clock = now
) -> Job:
    """Run a finished, failed or cancelled job again from scratch, as a new attempt with the same id.

    The image is the one evaluated before (by digest when known), so a restart re-evaluates the same
    submission; its earlier results stay under ``attempt-<n>`` (``requeue`` says how races end).
    """
    levels = phases.levels_of(config, phases.PhaseKind.LEADERBOARD)
    with database.session() as db:
        phases.check_window(db, config, clock())  # a restart after the close would move the leaderboard
        job = latest_job(db, team_id) if job_id is None else get_job(db, team_id, job_id)
        job_id = job.id
        if job.status in ACTIVE:
            raise Conflict(f"Job {job_id} is still {job.status}; cancel it first (`contestkit jobs cancel {job_id}`).")
        active = _active_job(db, team_id)
        if active is not None:
            raise _busy(active)
        requeue(db, config, job_id, team_id, levels)
    with database.session() as db:
        job = get_job(db, team_id, job_id)
        namespace = job.team.namespace
    emit(JobEvent.QUEUED, job=job.id, team=namespace, attempt=job.attempt, image=job.image, restart=True)
    return job


def requeue(db: Session, config: ServerConfig, job_id: int, team_id: int, levels: list[Any]) -> None:
    """Queue a terminal job again as a new attempt on ``levels``; its earlier results stay on disk.

    The job is requeued by one UPDATE that is conditional on its status still being a terminal one, so
    of two restarts racing for the same job exactly one wins (the other is a 409), and a restart racing
    a new submission of the team ends in a 409 from the database's one-active-job index, not a 500.
    """
    # From here on only statements: nothing loaded above may be flushed over what they write.
    db.expunge_all()
    try:
        claimed = db.execute(
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
            raise Conflict(
                f"Job {job_id} was restarted by another request at the same moment; "
                f"follow it with `contestkit jobs {job_id} --watch`.",
            )
        db.execute(delete(Worker).where(Worker.job_id == job_id).execution_options(synchronize_session=False))
        db.add_all(level_rows(levels, job_id=job_id))
        db.flush()
    except IntegrityError:
        # A submission of the same team won the race; the unique partial index refused us.
        db.rollback()
        active = _active_job(db, team_id)
        raise _busy(active) if active else Conflict("Your team already has an active job.") from None
