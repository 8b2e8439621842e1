"""The host's controls over jobs and the contest, shared by ``contestkit server jobs`` and the admin API.

Why one module for both: the CLI (on the server's host, straight to the database) and the admin API
(``api.admin``, for a host elsewhere) must do exactly the same thing, and every action is written to
``admin_actions`` with who did it (an admin's email, or ``cli:<unix user>``), in the same transaction
as the change itself, so that the record cannot miss an action nor list one that did not happen.
The controls over teams are ``teams``'; they record their actions here too.
"""

from __future__ import annotations

import getpass
from enum import Enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from contestkit.server.config import ServerConfig
from contestkit.server.contest import phases
from contestkit.server.errors import Conflict, NotFound
from contestkit.server.queue import operations
from contestkit.server.storage.db import ACTIVE, PENDING, QUEUED, TERMINAL, AdminAction, Job, Team, now


class HostAction(str, Enum):
    """What the record says was done."""

    TEAM_DISABLE = "team.disable"
    TEAM_ENABLE = "team.enable"
    TEAM_RENAME = "team.rename"
    TEAM_RESET_PASSWORD = "team.reset-password"
    TEAM_REMOVE = "team.remove"
    TEAM_PURGE = "team.purge"
    JOB_CANCEL = "job.cancel"
    JOB_RESTART = "job.restart"
    JOB_RERUN_LEVEL = "job.rerun-level"
    CONTEST_CLOSE = "contest.close"
    FINAL_START = "final.start"
    FINAL_PUBLISH = "final.publish"


def cli_actor() -> str:
    """Who acts from the shell: the Unix user (the CLI has no login)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def is_admin(config: ServerConfig, email: str) -> bool:
    """The host's accounts are the teams whose email ``admins`` in server.yaml lists (as the host pages)."""
    return email.strip().lower() in {address.strip().lower() for address in config.admins}


def record(db: Session, actor: str, action: HostAction, target: str | None, detail: str | None = None) -> None:
    db.add(AdminAction(at=now(), actor=actor, action=action.value, target=target, detail=detail))


def actions(db: Session, limit: int = 100) -> list[dict[str, Any]]:
    rows = db.scalars(select(AdminAction).order_by(AdminAction.id.desc()).limit(limit))
    return [
        {"id": r.id, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target, "detail": r.detail}
        for r in rows
    ]


# -- jobs -----------------------------------------------------------------------------------------


def host_job_document(
    job: Job, team_name: str, *, with_levels: bool = True, stale_after: float | None = None
) -> dict[str, Any]:
    """A job as the host sees it: every team's, every phase's (final levels included: the host's)."""
    from contestkit.server.api.documents import job_document

    document = job_document(job, stale_after=stale_after)
    document.update(team=team_name, phase=job.phase, priority=job.priority)
    if not with_levels:
        document.pop("workers", None)
    return document


def list_jobs(
    db: Session, *, all_jobs: bool = False, limit: int = 500, stale_after: float | None = None
) -> list[dict[str, Any]]:
    """Queued and running jobs (``all_jobs``: every job too, newest first)."""
    query = select(Job, Team.name).join(Team, Team.id == Job.team_id).options(selectinload(Job.workers))
    if not all_jobs:
        query = query.where(Job.status.in_(ACTIVE))
    rows = db.execute(query.order_by(Job.id.desc()).limit(limit)).all()
    return [host_job_document(job, name, stale_after=stale_after) for job, name in rows]


def queue_counts(db: Session) -> dict[str, int]:
    """Queued and running jobs, every phase's (``server status``)."""
    query = select(Job.status, func.count(Job.id)).where(Job.status.in_(ACTIVE)).group_by(Job.status)
    counts = dict(db.execute(query).all())
    return {status: int(counts.get(status, 0)) for status in ACTIVE}


def _job(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id) if 1 <= job_id <= operations.MAX_ID else None
    if job is None:
        raise NotFound(f"There is no job {job_id}; `contestkit server jobs --all` lists them.")
    return job


def cancel_job(db: Session, actor: str, job_id: int) -> None:
    job = _job(db, job_id)
    if job.status not in ACTIVE:
        raise Conflict(f"Job {job_id} is already {job.status}; there is nothing to cancel.")
    operations.cancel(db, job_id, "cancelled by the host before it started")
    record(db, actor, HostAction.JOB_CANCEL, f"job {job_id}")


def restart_job(db: Session, config: ServerConfig, actor: str, job_id: int) -> None:
    """Run any team's ended job again as a new attempt (outside the submission window too: the host's)."""
    job = _job(db, job_id)
    if job.status in ACTIVE:
        raise Conflict(
            f"Job {job_id} is still {job.status}; cancel it first (`contestkit server jobs cancel {job_id}`)."
        )
    kind = phases.PhaseKind(job.phase)
    team_id = job.team_id
    record(db, actor, HostAction.JOB_RESTART, f"job {job_id}")
    db.flush()
    operations.requeue(db, config, job_id, team_id, phases.levels_of(config, kind))


def rerun_level(db: Session, actor: str, job_id: int, level: str) -> None:
    """Evaluate one level of an ended job again (same attempt); the job is scored again when it ends.

    ``level`` is the level's index in the job (0, 1...) or its task (``GAME/STATE``)."""
    query = select(Job).where(Job.id == job_id).options(selectinload(Job.workers))
    # An id beyond the integer column cannot exist (and overflows the database driver): "no such job".
    job = db.scalars(query).first() if 1 <= job_id <= operations.MAX_ID else None
    if job is None:
        raise NotFound(f"There is no job {job_id}; `contestkit server jobs --all` lists them.")
    worker = next((w for w in job.workers if level in (str(w.idx), w.task)), None)
    if worker is None:
        raise NotFound(
            f"Job {job_id} has no level '{level}'; give its index (0..{len(job.workers) - 1}) or GAME/STATE."
        )
    if job.status not in TERMINAL:
        raise Conflict(f"Job {job_id} is still {job.status}; re-run a level once it ended.")
    if job.phase == phases.PhaseKind.LEADERBOARD.value:
        busy = db.scalar(
            select(Job.id).where(
                Job.team_id == job.team_id, Job.status.in_(ACTIVE), Job.phase == phases.PhaseKind.LEADERBOARD.value
            )
        )
        if busy is not None:
            raise Conflict(f"The team of job {job_id} has job {busy} queued or running; re-run the level after it.")
    worker.status, worker.score, worker.error, worker.progress = PENDING, None, None, None
    worker.finished_at = worker.started_at = None
    job.status, job.score, job.error, job.finished_at = QUEUED, None, None, None
    job.queued_at, job.runner, job.heartbeat_at, job.cancel_requested, job.resumes = now(), None, None, 0, 0
    record(db, actor, HostAction.JOB_RERUN_LEVEL, f"job {job_id}", worker.task)


# -- the contest ----------------------------------------------------------------------------------


def close_submissions(db: Session, config: ServerConfig, actor: str, at: float) -> float:
    """Close the submission window now (a phase without ``closes`` stays open until this); returns when
    it closed (an earlier close, by the host or by the configured time, stands)."""
    earlier = phases.closed_at(db, config, at)
    if earlier is not None:
        return earlier
    phases.set_state(db, phases.StateKey.CLOSED, at, actor)
    record(db, actor, HostAction.CONTEST_CLOSE, "submissions", phases.format_time(at))
    return at
