"""The host's API under ``/rest/admin/``: teams, jobs, the record of host actions, the contest's phases.

A separate role: every route needs a session or token of an account whose email ``admins`` in
server.yaml lists (the same notion as the host pages). A team's token is refused on every route
(403) before anything is read, so the routes cannot leak what they would show. The work itself is
``hosting``'s (shared with ``contestkit server teams|jobs``), which records who did what.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from contestkit.server.config import ServerConfig
from contestkit.server.contest import final, hosting
from contestkit.server.contest import teams as team_admin  # a route below is named `teams`
from contestkit.server.errors import Forbidden
from contestkit.server.storage.db import Database, Team, now

_NOT_HOST = "This is the host's API: your account is not one of the contest's admins (`admins` in server.yaml)."


class RenameRequest(BaseModel):
    name: str = Field(max_length=256)


class PasswordRequest(BaseModel):
    password: str = Field(max_length=4096)


class LevelRequest(BaseModel):
    level: str = Field(description="the level's index in the job (0, 1...) or GAME/STATE", max_length=300)


def router(database: Database, config: ServerConfig, caller: Callable[[Request], Any], scheduler: Any) -> APIRouter:
    """The admin routes; ``caller`` is the app's who-is-asking dependency."""
    api = APIRouter(prefix="/rest/admin", tags=["admin"])

    def admin(request: Request) -> str:
        who = caller(request)
        with database.session() as db:
            email = db.get(Team, who.team_id).email  # type: ignore[union-attr]
        if not hosting.is_admin(config, email):
            raise Forbidden(_NOT_HOST)
        return email

    # -- teams --

    @api.get("/teams")
    def teams(removed: bool = False, actor: str = Depends(admin)) -> list[dict[str, Any]]:
        """Every team (``removed=true``: removed ones too), with its number of jobs."""
        with database.session() as db:
            return team_admin.list_teams(db, include_removed=removed)

    @api.post("/teams/{ref}/disable")
    def disable(ref: str, actor: str = Depends(admin)) -> dict[str, Any]:
        """Lock a team out (it cannot log in or submit); its jobs and scores stay."""
        with database.session() as db:
            return team_admin.set_disabled(db, actor, ref, True)

    @api.post("/teams/{ref}/enable")
    def enable(ref: str, actor: str = Depends(admin)) -> dict[str, Any]:
        with database.session() as db:
            return team_admin.set_disabled(db, actor, ref, False)

    @api.post("/teams/{ref}/rename")
    def rename(ref: str, body: RenameRequest, actor: str = Depends(admin)) -> dict[str, Any]:
        with database.session() as db:
            return team_admin.rename(db, actor, ref, body.name)

    @api.post("/teams/{ref}/reset-password")
    def reset_password(ref: str, body: PasswordRequest, actor: str = Depends(admin)) -> dict[str, Any]:
        """A new password; the team's sessions and tokens end and its registry password rotates."""
        with database.session() as db:
            return team_admin.reset_password(db, actor, ref, body.password)

    @api.delete("/teams/{ref}")
    def remove(ref: str, purge: bool = False, actor: str = Depends(admin)) -> dict[str, Any]:
        """Remove a team; its jobs stay for the record unless ``purge=true``."""
        with database.session() as db:
            return team_admin.remove(db, config, actor, ref, purge=purge)

    # -- jobs --

    @api.get("/jobs")
    def jobs(all: bool = False, actor: str = Depends(admin)) -> list[dict[str, Any]]:  # noqa: A002
        """Queued and running jobs of every team (``all=true``: every job)."""
        with database.session() as db:
            return hosting.list_jobs(db, all_jobs=all, stale_after=config.heartbeat_timeout)

    @api.post("/jobs/{job_id}/cancel")
    def cancel(job_id: int, actor: str = Depends(admin)) -> dict[str, Any]:
        with database.session() as db:
            hosting.cancel_job(db, actor, job_id)
        scheduler.cancel(job_id)
        return {"ok": True, "detail": f"job {job_id} cancelled"}

    @api.post("/jobs/{job_id}/restart")
    def restart(job_id: int, actor: str = Depends(admin)) -> dict[str, Any]:
        with database.session() as db:
            hosting.restart_job(db, config, actor, job_id)
        scheduler.wake()
        return {"ok": True, "detail": f"job {job_id} queued again"}

    @api.post("/jobs/{job_id}/rerun-level")
    def rerun_level(job_id: int, body: LevelRequest, actor: str = Depends(admin)) -> dict[str, Any]:
        with database.session() as db:
            hosting.rerun_level(db, actor, job_id, body.level)
        scheduler.wake()
        return {"ok": True, "detail": f"a level of job {job_id} queued again"}

    @api.post("/close")
    def close(actor: str = Depends(admin)) -> dict[str, Any]:
        """Close submissions now; returns when they closed (an earlier close stands)."""
        with database.session() as db:
            return {"closed": hosting.close_submissions(db, config, actor, now())}

    @api.post("/final/start")
    def final_start(actor: str = Depends(admin)) -> dict[str, Any]:
        """Queue each team's selected submission on the hidden final levels (again: only teams missing)."""
        document = final.start(database, config, actor, now())
        scheduler.wake()
        return document

    @api.get("/final")
    def final_status(actor: str = Depends(admin)) -> dict[str, Any]:
        """The final's progress and ranking (with the hidden levels: the host's eyes only)."""
        with database.session() as db:
            return final.status(db, config)

    @api.post("/final/publish")
    def final_publish(actor: str = Depends(admin)) -> dict[str, Any]:
        """Make the final ranking public at /rest/leaderboard/final."""
        return {"published": final.publish(database, config, actor, now())}

    @api.get("/actions")
    def actions(limit: int = 100, actor: str = Depends(admin)) -> list[dict[str, Any]]:
        """The record of host actions, newest first: who did what to what, when."""
        with database.session() as db:
            return hosting.actions(db, max(1, min(limit, 1000)))

    return api
