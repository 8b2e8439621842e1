"""The leaderboard's rules: which job of a team counts, ties, the per-level view, the freeze, baselines,
and the export.

- ``ranking: latest`` (the 2018 rule, the default) counts each team's job that finished last;
  ``ranking: best`` its best-scoring finished job.
- Ties go to the earlier submission (the job created first), then the lower job id.
- ``level=GAME/STATE`` ranks the same jobs by that level's score (teams without one are left out).
- ``freeze_at``: from then on the public leaderboard counts only jobs that finished before it, so it
  stops changing; the teams still see their own scores in their jobs, and the host's export is live.
- ``baselines``: teams (by email) whose entries are the host's baselines, marked ``baseline: true``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from contestkit.server.api.documents import leaderboard_row
from contestkit.server.config import ServerConfig
from contestkit.server.contest import baselines, phases
from contestkit.server.errors import NotFound
from contestkit.server.storage.db import FINISHED, Job, Team, now


def _counted_jobs(db: Session, ranking: phases.Ranking, cutoff: float | None) -> list[tuple[Job, Team]]:
    """Each team's job that counts, under ``ranking``, among jobs finished before ``cutoff``."""
    query = (
        select(Job, Team)
        .join(Team, Team.id == Job.team_id)
        .where(Job.status == FINISHED, Job.score.is_not(None), Job.phase == phases.PhaseKind.LEADERBOARD.value)
        .where(Team.removed_at.is_(None))
        .options(selectinload(Job.workers))
    )
    if cutoff is not None:
        query = query.where(Job.finished_at < cutoff)
    chosen: dict[int, tuple[Job, Team]] = {}
    for job, team in db.execute(query).all():
        current = chosen.get(team.id)
        if current is None or _better(job, current[0], ranking):
            chosen[team.id] = (job, team)
    return list(chosen.values())


def _better(job: Job, than: Job, ranking: phases.Ranking) -> bool:
    if ranking is phases.Ranking.BEST:
        # The best score; of equal ones the earlier submission.
        return (-(job.score or 0.0), job.created_at, job.id) < (-(than.score or 0.0), than.created_at, than.id)
    # Latest = finished last: a restarted job that finished after a newer one is the latest.
    return (job.finished_at or 0.0, job.id) > (than.finished_at or 0.0, than.id)


def rows(
    db: Session, config: ServerConfig, *, level: str | None = None, cutoff: float | None = None
) -> list[dict[str, Any]]:
    """Ranked rows ``{name, score, job, finished, submitted, [baseline], levels}``, best first."""
    return ranked(db, phases.contest_plan(config).ranking, baselines.emails(config), level=level, cutoff=cutoff)


def ranked(
    db: Session,
    ranking: phases.Ranking,
    baselines: set[str],
    *,
    level: str | None = None,
    cutoff: float | None = None,
) -> list[dict[str, Any]]:
    result = []
    for job, team in _counted_jobs(db, ranking, cutoff):
        scores = {w.task: w.score for w in job.workers}
        score = job.score if level is None else scores.get(level)
        if score is None:
            continue
        row = leaderboard_row(team.name, job.id, score, job.finished_at)
        row.update(submitted=job.created_at, levels=scores)
        if team.email in baselines:
            row["baseline"] = True
        result.append(row)
    result.sort(key=lambda row: (-row["score"], row["submitted"], row["job"]))
    return result


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the public leaderboard shows it: the 2018 keys (and ``baseline``), not every level's score."""
    return {k: v for k, v in row.items() if k not in ("levels", "submitted")}


def public_board(db: Session, config: ServerConfig, *, level: str | None = None, at: float | None = None) -> dict:
    """``/rest/leaderboard``: frozen from ``freeze_at`` on; ``level``: one leaderboard level's view."""
    plan = phases.contest_plan(config)
    at = now() if at is None else at
    if level is not None:
        known = [lv.task for lv in phases.levels_of(config, phases.PhaseKind.LEADERBOARD)]
        if level not in known:
            raise NotFound(f"The leaderboard has no level '{level}'; its levels are {', '.join(known)}.")
    cutoff = phases.frozen_since(config, at)
    board = [public_row(row) for row in rows(db, config, level=level, cutoff=cutoff)]
    return {
        "leaderboard": board,
        "start": 1,
        "ranking": plan.ranking.value,
        "level": level,
        "frozen": cutoff,
    }


def export(db: Session, config: ServerConfig, *, fmt: str = "csv", final: bool = False) -> str:
    """The host's export: the live leaderboard (or the final ranking) with every level's score."""
    if final:
        from contestkit.server.contest import final as final_phase

        ranked = final_phase.ranking(db, config)
        levels = [lv.task for lv in phases.levels_of(config, phases.PhaseKind.FINAL)]
    else:
        ranked = rows(db, config)
        for place, row in enumerate(ranked, start=1):
            row["rank"] = place
        levels = [lv.task for lv in phases.levels_of(config, phases.PhaseKind.LEADERBOARD)]
    if fmt == "json":
        document = {"board": "final" if final else "leaderboard", "levels": levels, "rows": ranked}
        return json.dumps(document, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "team", "score", "job", "submitted", "baseline", *levels])
    for row in ranked:
        writer.writerow(
            [
                row["rank"],
                row["name"],
                row["score"],
                row["job"],
                phases.format_time(row["submitted"]),
                "yes" if row.get("baseline") else "",
                *[("" if row["levels"].get(lv) is None else row["levels"][lv]) for lv in levels],
            ]
        )
    return out.getvalue()
