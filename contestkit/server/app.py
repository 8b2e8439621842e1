"""The contest's HTTP API: the 2018 client's REST paths and JSON shapes, plus bearer tokens.

Paths, as the 2018 ``retro-contest`` client called them (it works against this server unchanged):

- ``POST /rest/login {email, password}`` sets the session cookie; ``POST /rest/logout`` ends it;
- ``GET /rest/user`` gives the team's registry: ``{"cr": {"url", "username", "password"}}``;
- ``POST /rest/job/start {tag}``; ``GET /rest/job/status``, ``/rest/job/status/all``, ``/rest/job/status/{id}``;
- ``POST /rest/job/kill``; ``POST /rest/job/restart``, ``/rest/job/restart/{id}``;
- ``GET /rest/leaderboard`` (public) ``{"leaderboard": [{"name", "score"}], "start": 1}``.

Every endpoint that needs a team accepts the session cookie or ``Authorization: Bearer <token>``
(tokens from ``POST /rest/token``). Errors are ``{"detail": "<one sentence that says what to do>"}``.
The OpenAPI description is at ``/openapi.json`` (no Swagger UI: it would load from a CDN).

The routes live in router modules under ``contestkit.server.api`` (their shared dependencies in
``api.deps``); this module only builds the server's services and assembles the routers, the
middleware and the lifespan (``serving`` runs the result, in one process or several).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from contestkit import __version__
from contestkit.server import core_status, heap, metrics
from contestkit.server.api import (
    admin,
    board,
    deps,
    documents,
    errors,
    final,
    head,
    health,
    jobdocs,
    jobs,
    openapi,
    registry,
    results,
    sessions,
)
from contestkit.server.api import contest as contest_api
from contestkit.server.config import load_config
from contestkit.server.contest import boardcache
from contestkit.server.contest.phases import Clock
from contestkit.server.core import Core, upgrade_data_dir
from contestkit.server.deployment import registry_supervision
from contestkit.server.executors import Executor
from contestkit.server.executors.configured import load_executor
from contestkit.server.queue.doorbell import SchedulerLink
from contestkit.server.queue.scheduling import Scheduler
from contestkit.server.security import auth, limits, registry_auth, throttle
from contestkit.server.storage.db import Database, now
from contestkit.server.web import pages

log = logging.getLogger("contestkit.server")


def create_app(
    data_dir: Path | str,
    *,
    executor: Executor | None = None,
    start_scheduler: bool = True,
    registry_supervisor: registry_supervision.RegistrySupervisor | None = None,
    clock: Clock = now,
    api_workers: int | None = None,
) -> FastAPI:
    """The API for the contest in ``data_dir``; the core (scheduler, sweeper, and the team registry when
    ``registry_supervisor`` is given: ``server run`` without ``--no-registry``) runs inside the same process.

    ``api_workers``: this app is one of that many API worker processes (``server run --workers N``) and
    the core runs in their parent (``serving``): it reaches the scheduler through its doorbell and reads
    the executor's and registry's state the core publishes. ``clock`` is the time sessions are stamped
    and checked with (tests inject one to expire them)."""
    config = load_config(data_dir)
    database = Database(config.database(), share=api_workers or 1)
    core: Core | None = None
    if api_workers is None:
        upgrade_data_dir(config, database)
        core = Core(config, database, executor or load_executor(config), registry_supervisor=registry_supervisor,
                    start_scheduler=start_scheduler)  # fmt: skip
        scheduler: Scheduler | SchedulerLink = core.scheduler
    else:
        boardcache.share_writes(Path(config.data_dir))
        status = core_status.CoreStatus(Path(config.data_dir))
        scheduler = SchedulerLink(Path(config.data_dir), core_status.PublishedExecutor(status))
        if status.section("registry").get("supervised"):
            registry_supervisor = core_status.PublishedSupervisor(status)  # type: ignore[assignment]
    services = deps.Services(
        config=config,
        database=database,
        scheduler=scheduler,
        realm=registry.Realm(config, database),
        guard=throttle.LoginGuard(
            registry_auth.read_credentials_key(config.credentials_key_path),
            database=database,
            window=config.login_window_seconds,
            account_limit=config.login_account_limit,
            client_limit=config.login_client_limit,
            device_limit=config.login_account_limit,
        ),
        hashes=auth.HashPool() if core else auth.HashPool.shared_by(api_workers or 1, config.data_dir / "hash-slots"),
        metrics=metrics.Metrics(database, scheduler.executor, config.heartbeat_timeout, probe_every=5.0 if core else 0),
        board_cache=boardcache.BoardCache(database, board.board_builder(config)),
        ended_jobs=jobdocs.EndedJobDocuments(
            lambda job: documents.job_json(documents.job_status(job, stale_after=config.heartbeat_timeout))
        ),
        registry=registry_supervision.RegistryWatch(
            config, registry_supervisor, probe=None if core else core_status.PublishedRegistryProbe(status)
        ),
        clock=clock,
    )
    services.metrics.database_registry.register(registry_supervision.RegistryCollector(services.registry))

    def warm_boards() -> None:
        """Build both leaderboards before serving: a build at the 2018 scale takes about a second, and the
        requests that arrive at a cold cache all wait for it (with ``--workers N``, each worker's first
        requests did: wrk's p99 at 200 connections was 1.4 s with 72 timeouts, against 0.46 s for one
        process that the benchmark's warm-up had reached)."""
        try:
            services.board_cache.get()
            page_board.get()
        except Exception:  # noqa: BLE001 - a database that does not answer yet: the first request builds them
            log.warning("the leaderboards could not be built before serving", exc_info=True)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.worker_threads  # see the setting
        if core is not None:
            core.start()
        await anyio.to_thread.run_sync(warm_boards)
        heap.freeze_startup_heap()  # short GC pauses under load (see the module)
        try:
            yield
        finally:
            if core is not None:
                # The registry's supervisor too: here, not only in serve(), because on SIGTERM uvicorn shuts
                # the app down and then re-raises the signal, which ends the process before serve()'s cleanup.
                await anyio.to_thread.run_sync(core.stop)
            else:
                scheduler.close()  # type: ignore[union-attr]
            database.dispose()
            services.hashes.close()

    app = FastAPI(
        title="contestkit contest server",
        version=__version__,
        description=(
            "Self-hosted Retro contest API, compatible with the 2018 OpenAI Retro Contest client. "
            "Authenticate with the session cookie from POST /rest/login or with Authorization: Bearer <token>."
        ),
        lifespan=lifespan,
        # No Swagger UI or ReDoc: FastAPI's load their scripts from a CDN (against the pages' content
        # security policy, and blank offline). The description itself stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.config = config
    app.state.database = database
    app.state.scheduler = scheduler
    app.state.metrics = services.metrics
    app.add_middleware(metrics.LatencyMiddleware)
    errors.install(app)
    app.add_middleware(limits.RequestLimits, session_cookie=auth.SESSION_COOKIE, public_url=config.server_url)
    app.add_middleware(head.HeadAsGet)
    openapi.install(app)

    app.include_router(sessions.router)
    app.include_router(registry.router(services.realm, deps.caller))
    app.include_router(results.router(config, database, deps.caller))
    app.include_router(admin.router(database, config, deps.caller, scheduler))
    app.include_router(final.router)
    app.include_router(jobs.router)
    app.include_router(board.router)
    app.include_router(health.router)
    app.include_router(contest_api.router)
    page_board = pages.install(app, services)
    return app
