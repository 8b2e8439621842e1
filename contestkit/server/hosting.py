"""The host's controls over teams and jobs, shared by ``contestkit server teams|jobs`` and the admin API.

Why one module for both: the CLI (on the server's host, straight to the database) and the admin API
(``admin_api``, for a host elsewhere) must do exactly the same thing, and every action is written to
``admin_actions`` with who did it (an admin's email, or ``cli:<unix user>``), in the same transaction
as the change itself, so that the record cannot miss an action nor list one that did not happen.
"""

from __future__ import annotations

import getpass
import shutil
from enum import Enum
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from contestkit.errors import UsageError
from contestkit.server import auth, operations, phases
from contestkit.server.config import ServerConfig
from contestkit.server.db import ACTIVE, PENDING, QUEUED, TERMINAL, AdminAction, AuthToken, Job, Team, now
from contestkit.server.errors import Conflict, Invalid, NotFound


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


# -- teams ----------------------------------------------------------------------------------------


def find_team(db: Session, ref: str) -> Team:
    """A team by email, name or id (the host types whichever is at hand)."""
    ref = ref.strip()
    conditions = [Team.email == ref.lower(), Team.name == ref]
    if ref.isdigit() and int(ref) <= operations.MAX_ID:
        conditions.append(Team.id == int(ref))
    team = db.scalars(select(Team).where(or_(*conditions)).order_by(Team.id)).first() if auth.encodable(ref) else None
    if team is None:
        raise NotFound(f"No team has the email, name or id '{ref}'; `contestkit server teams list` shows them.")
    return team


def team_document(team: Team, jobs: int = 0) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "email": team.email,
        "namespace": team.namespace,
        "disabled": bool(team.disabled),
        "removed": team.removed_at is not None,
        "jobs": jobs,
        "created": team.created_at,
    }


def list_teams(db: Session, *, include_removed: bool = False) -> list[dict[str, Any]]:
    counts = {team_id: n for team_id, n in db.execute(select(Job.team_id, func.count(Job.id)).group_by(Job.team_id))}
    query = select(Team).order_by(Team.id)
    if not include_removed:
        query = query.where(Team.removed_at.is_(None))
    return [team_document(team, counts.get(team.id, 0)) for team in db.scalars(query)]


def set_disabled(db: Session, actor: str, ref: str, disabled: bool) -> dict[str, Any]:
    """Disable (or enable) a team: a disabled one cannot log in or submit; its jobs and scores stay.

    Its sessions and tokens end at once, so that a team already logged in is locked out too."""
    team = find_team(db, ref)
    if team.removed_at is not None:
        raise Conflict(f"The team '{team.name}' was removed; it cannot be enabled again.")
    team.disabled = 1 if disabled else 0
    if disabled:
        db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    record(db, actor, HostAction.TEAM_DISABLE if disabled else HostAction.TEAM_ENABLE, team.email)
    return team_document(team)


def rename(db: Session, actor: str, ref: str, new_name: str) -> dict[str, Any]:
    from contestkit.server.admin import NAME_MAX, check_text

    team = find_team(db, ref)
    new_name = new_name.strip()
    if not new_name:
        raise Invalid(f"The team name must have 1 to {NAME_MAX} characters.")
    try:
        check_text(new_name, "name", NAME_MAX)
    except UsageError as exc:
        raise Invalid(str(exc)) from None
    if db.scalar(select(Team.id).where(Team.name == new_name, Team.id != team.id)) is not None:
        raise Conflict(f"A team named '{new_name}' already exists; choose another name.")
    old = team.name
    team.name = new_name
    record(db, actor, HostAction.TEAM_RENAME, team.email, f"{old} -> {new_name}")
    return team_document(team)


def reset_password(db: Session, actor: str, ref: str, password: str) -> dict[str, Any]:
    """A new password; the team's sessions end, its API tokens are revoked, its registry password rotates."""
    try:
        auth.check_password_rules(password)
    except UsageError as exc:
        raise Invalid(str(exc)) from None
    team = find_team(db, ref)
    team.password_hash = auth.hash_password(password)
    team.registry_generation += 1
    db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    record(db, actor, HostAction.TEAM_RESET_PASSWORD, team.email)
    return team_document(team)


def remove(db: Session, config: ServerConfig, actor: str, ref: str, *, purge: bool = False) -> dict[str, Any]:
    """Remove a team. Its jobs are kept for the record (the team is hidden and locked out, its email
    freed for a new account) unless ``purge``: then the team, its jobs and their results go."""
    team = find_team(db, ref)
    document = team_document(team)
    active = db.scalar(select(Job.id).where(Job.team_id == team.id, Job.status.in_(ACTIVE)))
    if active is not None:
        raise Conflict(f"The team '{team.name}' has job {active} queued or running; cancel it first.")
    if purge:
        job_ids = list(db.scalars(select(Job.id).where(Job.team_id == team.id)))
        db.execute(delete(Job).where(Job.team_id == team.id))
        db.execute(delete(Team).where(Team.id == team.id))
        record(db, actor, HostAction.TEAM_PURGE, document["email"], f"{document['name']}; jobs {job_ids}")
        db.flush()
        for job_id in job_ids:
            shutil.rmtree(config.jobs_dir / str(job_id), ignore_errors=True)
        document["removed"] = True
        return document
    stamp = now()
    team.removed_at = stamp
    team.disabled = 1
    team.email = f"removed-{team.id}-{int(stamp)}.{team.email}"[:254]
    db.execute(delete(AuthToken).where(AuthToken.team_id == team.id))
    record(db, actor, HostAction.TEAM_REMOVE, document["email"], document["name"])
    document.update(removed=True, disabled=True)
    return document


# -- jobs -----------------------------------------------------------------------------------------


def host_job_document(
    job: Job, team_name: str, *, with_levels: bool = True, stale_after: float | None = None
) -> dict[str, Any]:
    """A job as the host sees it: every team's, every phase's (final levels included: the host's)."""
    from contestkit.server.documents import job_document

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
    job = db.scalars(select(Job).where(Job.id == job_id).options(selectinload(Job.workers))).first()
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
