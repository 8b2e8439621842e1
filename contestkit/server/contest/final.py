"""The hidden final: each team's selected submission evaluated once on the final level set.

As in 2018, after submissions closed each team's latest (finished) submission is run on levels that
were never shown. Here:

- ``start`` queues one final job per team (the image of its selected leaderboard job, pinned by digest
  when known) on the final levels, at the final phase's priority, through the same queue and executors.
  Each team is queued in a transaction of its own and a unique index allows one final job per team,
  so ``start`` can be run again after a crash (it queues the teams still missing) and never queues a
  team twice, even when two hosts run it at once. A server killed while final jobs run resumes them
  like any job (finished levels kept).
- Final jobs are invisible to teams (their job lists show leaderboard jobs only), and no answer a team
  can get names a final level before ``publish``; after it, ``/rest/leaderboard/final`` shows the
  ranking with each level's score.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from contestkit.env.scoring import plural
from contestkit.server.config import ServerConfig
from contestkit.server.contest import baselines, hosting, phases
from contestkit.server.errors import Conflict, Forbidden, NotFound
from contestkit.server.queue import operations
from contestkit.server.storage.db import ACTIVE, FINISHED, Database, Job, Team, now

FINAL = phases.PhaseKind.FINAL.value
LEADERBOARD = phases.PhaseKind.LEADERBOARD.value


def _final_phase(config: ServerConfig) -> phases.Phase:
    final = phases.contest_plan(config).final
    if final is None:
        raise Conflict("This contest has no final phase; add phases.final with its levels to server.yaml.")
    return final


def selected_job(db: Session, config: ServerConfig, team: Team) -> Job | None:
    """The leaderboard job the final evaluates for ``team``: its choice (when teams may choose), else its
    latest finished submission."""
    if _final_phase(config).selection is phases.Selection.TEAM and team.selected_job_id is not None:
        chosen = db.get(Job, team.selected_job_id)
        if chosen is not None and chosen.team_id == team.id and chosen.status == FINISHED:
            return chosen
    return db.scalars(
        select(Job)
        .where(Job.team_id == team.id, Job.phase == LEADERBOARD, Job.status == FINISHED)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
    ).first()


def select_submission(database: Database, config: ServerConfig, team_id: int, job_id: int, at: float) -> int:
    """A team chooses which finished submission the final evaluates (before the close only)."""
    if _final_phase(config).selection is not phases.Selection.TEAM:
        raise Forbidden("In this contest the final evaluates each team's latest finished submission; none is chosen.")
    with database.session() as db:
        phases.check_window(db, config, at)
        job = db.get(Job, job_id) if 1 <= job_id <= 2**31 - 1 else None
        if job is None or job.team_id != team_id or job.phase != LEADERBOARD:
            raise NotFound(f"Your team has no job {job_id}; `contestkit jobs --all` lists yours.")
        if job.status != FINISHED:
            raise Conflict(f"Job {job_id} is {job.status}; choose a finished one.")
        team = db.get(Team, team_id)
        assert team is not None
        team.selected_job_id = job_id
    return job_id


def start(database: Database, config: ServerConfig, actor: str, at: float) -> dict[str, Any]:
    """Queue each team's final job (those not queued yet); returns the status, with the names of the
    teams that get none because they have no finished submission (``without_entry``)."""
    final = _final_phase(config)
    levels = phases.levels_of(config, phases.PhaseKind.FINAL)
    with database.session() as db:
        if phases.closed_at(db, config, at) is None:
            raise Conflict("Submissions are still open; close them first (`contestkit server close`).")
        if phases.set_state(db, phases.StateKey.FINAL_STARTED, at, actor):
            hosting.record(db, actor, hosting.HostAction.FINAL_START, "final", plural(len(levels), "level"))
        team_ids = list(
            db.scalars(select(Team.id).where(Team.removed_at.is_(None), Team.disabled == 0).order_by(Team.id))
        )
    without_entry: list[str] = []
    for team_id in team_ids:
        with database.session() as db:
            if db.scalar(select(Job.id).where(Job.team_id == team_id, Job.phase == FINAL)) is not None:
                continue  # queued by an earlier run (or by another host right now)
            team = db.get(Team, team_id)
            assert team is not None
            source = selected_job(db, config, team)
            if source is None:
                without_entry.append(team.name)  # no finished submission: nothing to evaluate, and the host is told
                continue
            db.add(
                operations.new_job(
                    config,
                    team_id,
                    tag=source.tag,
                    image=source.image,
                    digest=source.digest,
                    levels=levels,
                    at=now(),
                    phase=phases.PhaseKind.FINAL,
                    priority=final.priority,
                    source_job_id=source.id,
                )
            )
            try:
                db.flush()
            except IntegrityError:
                db.rollback()  # another `final start` queued this team a moment ago: one final job per team
    with database.session() as db:
        return {**status(db, config), "without_entry": without_entry}


def _final_jobs(db: Session) -> list[tuple[Job, Team]]:
    rows = db.execute(
        select(Job, Team)
        .join(Team, Team.id == Job.team_id)
        .where(Job.phase == FINAL)
        .options(selectinload(Job.workers))
    ).all()
    return [(job, team) for job, team in rows]


def ranking(db: Session, config: ServerConfig) -> list[dict[str, Any]]:
    """The final's finished jobs, best first, baselines marked; ties go to the earlier submission (of the
    evaluated image). The export, ``/rest/leaderboard/final``, ``/final`` and the CLI all show this one."""
    rows = []
    for job, team in _final_jobs(db):
        if job.status != FINISHED or job.score is None:
            continue
        source = db.get(Job, job.source_job_id) if job.source_job_id else None
        submitted = source.created_at if source else job.created_at
        rows.append(
            {
                "name": team.name,
                "score": job.score,
                "job": job.id,
                "submission": job.source_job_id,
                "submitted": submitted,
                "levels": {w.task: w.score for w in job.workers},
            }
        )
    rows.sort(key=lambda row: (-row["score"], row["submitted"], row["job"]))
    for place, row in enumerate(rows, start=1):
        row["rank"] = place
    return baselines.mark(db, config, rows)


def status(db: Session, config: ServerConfig) -> dict[str, Any]:
    """The final's progress, for the host (it names the hidden levels)."""
    _final_phase(config)  # no final phase: a 409 that says how to add one
    jobs = _final_jobs(db)
    counts: dict[str, int] = {}
    for job, _team in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    return {
        "started": phases.state_at(db, phases.StateKey.FINAL_STARTED),
        "published": phases.state_at(db, phases.StateKey.FINAL_PUBLISHED),
        "closed": phases.closed_at(db, config, now()),
        "levels": [lv.task for lv in phases.levels_of(config, phases.PhaseKind.FINAL)],
        "jobs": counts,
        "teams_with_final_job": len(jobs),
        "teams": [
            {
                "team": team.name,
                "job": job.id,
                "status": job.status,
                "score": job.score,
                "submission": job.source_job_id,
            }
            for job, team in sorted(jobs, key=lambda pair: pair[0].id)
        ],
        "ranking": ranking(db, config),
    }


def published_board(db: Session, config: ServerConfig) -> dict[str, Any]:
    """The public final board (``NotFound`` until published): its levels, in order, and the ranking."""
    published = phases.state_at(db, phases.StateKey.FINAL_PUBLISHED)
    if published is None:
        raise NotFound("The final results are not published yet.")
    levels = [lv.task for lv in phases.levels_of(config, phases.PhaseKind.FINAL)]
    return {"leaderboard": ranking(db, config), "start": 1, "levels": levels, "published": published}


def running(document: dict[str, Any]) -> bool:
    """Whether a ``status`` document has final jobs still queued or running (``final status --watch``)."""
    return any(document["jobs"].get(state, 0) for state in ACTIVE)


def publish(database: Database, config: ServerConfig, actor: str, at: float) -> float:
    """Make the final ranking public (once every final job ended); returns when it was published."""
    _final_phase(config)
    with database.session() as db:
        published = phases.state_at(db, phases.StateKey.FINAL_PUBLISHED)
        if published is not None:
            return published
        if phases.state_at(db, phases.StateKey.FINAL_STARTED) is None:
            raise Conflict("The final has not started; run `contestkit server final start` first.")
        busy = db.scalar(select(Job.id).where(Job.phase == FINAL, Job.status.in_(ACTIVE)).limit(1))
        if busy is not None:
            raise Conflict(f"Final job {busy} has not ended; publish once `contestkit server final status` shows none.")
        phases.set_state(db, phases.StateKey.FINAL_PUBLISHED, at, actor)
        hosting.record(db, actor, hosting.HostAction.FINAL_PUBLISH, "final")
    return at
