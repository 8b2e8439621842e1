"""The contest as everyone sees it, and the check ``contestkit submit`` makes before it pushes.

- ``GET /rest/contest`` (public): the name, description, rules, the phase in one line with its
  moments, and the leaderboard's levels (``contest.overview``; never the final's).
- ``GET /rest/job/check`` (a team): would ``POST /rest/job/start`` take a submission now? The same
  checks (window, running job, quota) and the same refusals, so ``submit`` can stop before a long push.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from contestkit.server.api.deps import CallerDep, ServicesDep
from contestkit.server.contest import overview as contest
from contestkit.server.queue import operations
from contestkit.server.storage.db import now

router = APIRouter()


@router.get("/rest/contest", tags=["contest"])
def contest_overview(found: ServicesDep) -> dict[str, Any]:
    """The contest's name, description, rules, phase (one line and its moments) and leaderboard levels."""
    with found.database.session() as db:
        return contest.overview(db, found.config, now())


@router.get("/rest/job/check", tags=["jobs"])
def check(who: CallerDep, found: ServicesDep) -> dict[str, Any]:
    """200 ``{"ok": true}`` when a submission would be taken now, else the refusal ``POST /rest/job/start``
    would answer (403 outside the window, 409 with a job queued or running, 429 over the quota)."""
    with found.database.session() as db:
        operations.check_can_start(db, found.config, who.team_id, now())
    return {"ok": True}
