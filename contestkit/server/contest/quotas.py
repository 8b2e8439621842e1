"""Submission quotas per team: per day (any 24 hours), per phase and in total, as the host chooses.

Why count in the database at submit time: the one-active-job index already serialises a team's
submissions (a second one is refused while the first is queued), so a count read in the submitting
transaction cannot be raced past. Final jobs are the host's, not the team's, and never count.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from contestkit.server.contest.phases import PhaseKind, Quota, format_time
from contestkit.server.errors import QuotaExceeded
from contestkit.server.storage.db import FAILED, Job

DAY = 86400.0


def _counted(db: Session, team_id: int, quota: Quota, since: float | None = None) -> list[float]:
    """Creation times of the team's submissions that use up its quota, oldest first."""
    query = select(Job.created_at).where(Job.team_id == team_id, Job.phase == PhaseKind.LEADERBOARD.value)
    if not quota.count_failed:
        query = query.where(Job.status != FAILED)
    if since is not None:
        query = query.where(Job.created_at > since)
    return list(db.scalars(query.order_by(Job.created_at)).all())


def check_quota(db: Session, team_id: int, quota: Quota, at: float) -> None:
    """Refuse a submission over any of the quotas, saying when the next one is allowed."""
    if quota.total is not None and len(_counted(db, team_id, quota)) >= quota.total:
        raise QuotaExceeded(f"Your team has used all {quota.total} submissions of this contest; no more are allowed.")
    if quota.per_phase is not None and len(_counted(db, team_id, quota)) >= quota.per_phase:
        raise QuotaExceeded(
            f"Your team has used all {quota.per_phase} submissions of the leaderboard phase; "
            "no more are allowed in this phase."
        )
    if quota.per_day is not None:
        recent = _counted(db, team_id, quota, since=at - DAY)
        if len(recent) >= quota.per_day:
            # The window slides: a slot frees when the oldest submission that fills it is a day old.
            next_at = recent[len(recent) - quota.per_day] + DAY
            raise QuotaExceeded(
                f"Your team has used its {quota.per_day} submissions of the last 24 hours; the next is allowed at "
                f"{format_time(next_at)}.",
                retry_after=max(1, int(next_at - at) + 1),
            )


def usage(db: Session, team_id: int, quota: Quota, at: float) -> dict[str, int]:
    """How much of each quota the team has used (for the host page): ``{"day": n, "phase": n}``."""
    return {"day": len(_counted(db, team_id, quota, since=at - DAY)), "phase": len(_counted(db, team_id, quota))}


def describe(quota: Quota) -> str:
    """The quota in words, as the host page shows it."""
    parts = []
    if quota.per_day is not None:
        parts.append(f"{quota.per_day} per 24 hours")
    if quota.per_phase is not None:
        parts.append(f"{quota.per_phase} in the leaderboard phase")
    if quota.total is not None:
        parts.append(f"{quota.total} in total")
    if not parts:
        return "No submission quota."
    failed = "failed jobs count" if quota.count_failed else "failed jobs do not count"
    return f"Quota: {', '.join(parts)} ({failed})."
