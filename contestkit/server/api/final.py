"""The teams' side of the hidden final: choosing a submission and, once published, the final leaderboard.

The rules (who may choose what, when the ranking is public) are ``final``'s; these routes only
expose them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from contestkit.server.api.deps import CallerDep, ServicesDep
from contestkit.server.contest import final
from contestkit.server.storage.db import now

router = APIRouter(tags=["contest"])


@router.post("/rest/job/select/{job_id}")
def choose(job_id: int, who: CallerDep, found: ServicesDep) -> dict[str, Any]:
    """Choose which finished submission the final evaluates (when the host lets teams choose)."""
    return {"selected": final.select_submission(found.database, found.config, who.team_id, job_id, now())}


@router.get("/rest/leaderboard/final")
def final_board(found: ServicesDep) -> dict[str, Any]:
    """The final ranking with each level's score; 404 until the host publishes it."""
    with found.database.session() as db:
        return final.published_board(db, found.config)
