"""The server's own state for machines: ``GET /rest/health`` (load balancers, tests) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from contestkit import __version__
from contestkit.server.api.deps import ServicesDep
from contestkit.server.api.errors import UNAVAILABLE
from contestkit.server.storage.db import Team

router = APIRouter(tags=["contest"])


@router.get("/rest/health")
def health(found: ServicesDep) -> JSONResponse:
    """For load balancers and the tests: the server is up, its database answers (else 503), and
    whether the engine that runs level-runs and the team registry answer (reported; the API works
    without them, but a registry ``server run`` runs and that is down makes ``ok`` false)."""
    try:
        with found.database.session() as db:
            db.scalar(select(Team.id).limit(1))
        database_ok, database_detail = True, "the database answers"
    except SQLAlchemyError as exc:
        database_ok, database_detail = False, f"the database does not answer ({type(exc).__name__})"
    executor_ok, executor_detail = found.metrics.probe.check()
    registry = found.registry.health()
    document = {
        # A registry this server runs (``server run``) is part of it: down, the contest is not ok.
        "ok": database_ok and (registry.ok or not registry.supervised),
        "version": __version__,
        "database": {"ok": database_ok, "detail": database_detail},
        "executor": {"name": found.scheduler.executor.name, "ok": executor_ok, "detail": executor_detail},
        "registry": registry.document(),
    }
    return JSONResponse(document, status_code=200 if database_ok else UNAVAILABLE)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(found: ServicesDep) -> Response:
    """Prometheus' text format: the queue, running level-runs, their speed, latency, failed logins."""
    body, content_type = found.metrics.exposition()
    return Response(body, media_type=content_type)
