"""The public leaderboard, ``GET /rest/leaderboard`` (``level=GAME/STATE``: one level's view).

Public, as in 2018; frozen from ``freeze_at`` on. The rows are ``leaderboards``'; the shape is
``documents.LeaderboardResponse``; the whole board's answer is cached (``boardcache``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from contestkit.server.api import deps, documents
from contestkit.server.api.deps import ServicesDep
from contestkit.server.api.documents import LeaderboardResponse
from contestkit.server.config import ServerConfig
from contestkit.server.contest import leaderboards

router = APIRouter(tags=["contest"])


def board_builder(config: ServerConfig) -> Callable[[Session], bytes]:
    """What ``boardcache.BoardCache`` calls to build the whole board's answer."""

    def build(db: Session) -> bytes:
        return documents.leaderboard_json(leaderboards.public_board(db, config))

    return build


@router.get("/rest/leaderboard", response_model=LeaderboardResponse, response_model_exclude_none=True)
async def board(found: ServicesDep, level: str | None = None) -> Response:
    """Each team's latest (or best) finished job, best first; ``level=GAME/STATE``: that level's view.
    Public, as in 2018; frozen from ``freeze_at`` on. The whole board is cached (``boardcache``):
    while nothing changed it is answered here, on the event loop, without a thread or a query."""
    if level is None:
        body = found.board_cache.peek()
        if body is None:
            body = await run_in_threadpool(found.board_cache.get)
        return Response(body, media_type="application/json")
    return await run_in_threadpool(_level_board, found, level)


def _level_board(found: deps.Services, level: str) -> Response:
    with found.database.session() as db:
        body = documents.leaderboard_json(leaderboards.public_board(db, found.config, level=level))
    return Response(body, media_type="application/json")
