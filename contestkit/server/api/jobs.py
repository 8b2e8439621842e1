"""A team's jobs: ``/rest/job/start``, ``status``, ``status/all``, ``status/{id}``, ``kill``, ``restart``.

The answers are ``documents.JobStatus``, built by ``documents.job_status``; what the requests do to
the jobs is ``operations``' (and ``deps.cancel_job``/``restart_job``, which the pages call too).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from contestkit.server.api import deps, documents
from contestkit.server.api.deps import CallerDep, PlainText, ServicesDep
from contestkit.server.api.documents import JobStatus
from contestkit.server.queue import operations

router = APIRouter(tags=["jobs"])
MAX_PAGE = 1000  # the most jobs one `status/all` page returns when the caller asks for a page
_ANSWER = {"response_model": JobStatus, "response_model_exclude_none": True}


class StartRequest(BaseModel):
    tag: PlainText = Field(description="TAG or REPOSITORY:TAG inside the team's registry namespace")
    digest: PlainText | None = Field(default=None, description="sha256:... of the pushed manifest, to pin the image")


@router.post("/rest/job/start", status_code=201, **_ANSWER)
def start(body: StartRequest, who: CallerDep, found: ServicesDep) -> JobStatus:
    """Queue a job for the team's image ``<registry>/<namespace>/<repository>:<tag>``; one at a time."""
    job = operations.start_job(found.database, found.config, who.team_id, body.tag, body.digest)
    found.scheduler.wake()
    return deps.job_status(found, job)


async def _team_read(request: Request, read: Callable[[Session, deps.Caller, deps.Services], bytes]) -> Response:
    """A signed-in read in one hop to a worker thread: who asks, the query, the JSON.

    Why not the usual sync dependency and sync endpoint: FastAPI then hands each request to a
    worker thread three times (the caller, the endpoint, the response's validation), and on
    2 cores those hand-offs, not the queries, were most of what ``status/<id>`` cost."""

    def work() -> bytes:
        who = deps.caller(request)
        found = deps.services_of(request)
        with found.database.session() as db:
            return read(db, who, found)

    return Response(await run_in_threadpool(work), media_type="application/json")


@router.get("/rest/job/status", **_ANSWER)
async def status_latest(request: Request) -> Response:
    """The team's latest job."""
    return await _team_read(
        request,
        lambda db, who, found: documents.job_json(deps.job_status(found, operations.latest_job(db, who.team_id))),
    )


@router.get("/rest/job/status/all", response_model=list[JobStatus], response_model_exclude_none=True)
async def status_all(
    request: Request,
    limit: int | None = Query(None, ge=1, le=MAX_PAGE, description="At most this many jobs (default: all)."),
    before: int | None = Query(None, ge=1, description="Only jobs older than this job id (the next page)."),
) -> Response:
    """The team's jobs, newest first; ``limit`` and ``before`` page through a long history.
    Ended jobs are answered from their documents kept ready (``jobdocs``)."""
    return await _team_read(
        request, lambda db, who, found: found.ended_jobs.team_jobs(db, who.team_id, limit=limit, before=before)
    )


@router.get("/rest/job/status/{job_id}", **_ANSWER)
async def status_one(job_id: int, request: Request) -> Response:
    """One of the team's jobs (another team's job is 404)."""
    return await _team_read(
        request,
        lambda db, who, found: documents.job_json(deps.job_status(found, operations.get_job(db, who.team_id, job_id))),
    )


@router.post("/rest/job/kill", **_ANSWER)
def kill(who: CallerDep, found: ServicesDep) -> JobStatus:
    """Cancel the team's queued or running job."""
    return deps.job_status(found, deps.cancel_job(found, who, None))


@router.post("/rest/job/kill/{job_id}", **_ANSWER)
def kill_one(job_id: int, who: CallerDep, found: ServicesDep) -> JobStatus:
    """Cancel one job of the team (it must be queued or running)."""
    return deps.job_status(found, deps.cancel_job(found, who, job_id))


@router.post("/rest/job/restart", **_ANSWER)
def restart(who: CallerDep, found: ServicesDep) -> JobStatus:
    """Run the team's latest job again (a new attempt with the same id and image)."""
    return deps.job_status(found, deps.restart_job(found, who, None))


@router.post("/rest/job/restart/{job_id}", **_ANSWER)
def restart_one(job_id: int, who: CallerDep, found: ServicesDep) -> JobStatus:
    """Run one of the team's finished, failed or cancelled jobs again."""
    return deps.job_status(found, deps.restart_job(found, who, job_id))
