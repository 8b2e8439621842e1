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
middleware and the lifespan, and runs the result (``serve``).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from contestkit import __version__
from contestkit.errors import ContestkitError
from contestkit.server import heap, metrics
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
from contestkit.server.config import DEFAULT_PORT, ServerConfig, load_config
from contestkit.server.contest import boardcache
from contestkit.server.contest import overview as contest
from contestkit.server.contest.phases import Clock
from contestkit.server.deployment import registry_supervision
from contestkit.server.executors import Executor
from contestkit.server.executors.configured import load_executor
from contestkit.server.queue.scheduling import Scheduler
from contestkit.server.security import auth, housekeeping, limits, registry_auth, throttle
from contestkit.server.storage.db import Database, now
from contestkit.server.storage.migrations import migrate
from contestkit.server.web import pages

log = logging.getLogger("contestkit.server")


def create_app(
    data_dir: Path | str,
    *,
    executor: Executor | None = None,
    start_scheduler: bool = True,
    registry_supervisor: registry_supervision.RegistrySupervisor | None = None,
    clock: Clock = now,
) -> FastAPI:
    """The API for the contest in ``data_dir``; the scheduler runs inside the same process (and the team
    registry too, when ``registry_supervisor`` is given: ``server run`` without ``--no-registry``).

    ``clock`` is the time sessions are stamped and checked with (tests inject one to expire them)."""
    config = load_config(data_dir)
    database = Database(config.database())
    migrate(database)
    for note in registry_auth.prepare_data_dir(config):  # upgrades a data directory made for htpasswd
        log.warning("%s", note)
    scheduler = Scheduler(database, config, executor or load_executor(config))
    services = deps.Services(
        config=config,
        database=database,
        scheduler=scheduler,
        realm=registry.Realm(config, database),
        guard=throttle.LoginGuard(
            registry_auth.read_credentials_key(config.credentials_key_path),
            window=config.login_window_seconds,
            account_limit=config.login_account_limit,
            client_limit=config.login_client_limit,
            device_limit=config.login_account_limit,
        ),
        hashes=auth.HashPool(),
        metrics=metrics.Metrics(database, scheduler.executor, config.heartbeat_timeout),
        board_cache=boardcache.BoardCache(database, board.board_builder(config)),
        ended_jobs=jobdocs.EndedJobDocuments(
            lambda job: documents.job_json(documents.job_status(job, stale_after=config.heartbeat_timeout))
        ),
        registry=registry_supervision.RegistryWatch(config, registry_supervisor),
        clock=clock,
    )
    services.metrics.database_registry.register(registry_supervision.RegistryCollector(services.registry))
    sweeper = housekeeping.Sweeper(database, config.sweep_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.worker_threads  # see the setting
        contest.announce(database, config, log, now())
        if start_scheduler:
            scheduler.start()
        sweeper.start()
        heap.freeze_startup_heap()  # short GC pauses under load (see the module)
        try:
            yield
        finally:
            sweeper.stop()
            if start_scheduler:
                scheduler.stop()
            if registry_supervisor is not None:
                # Here, not only in serve(): on SIGTERM uvicorn shuts the app down and then re-raises the
                # signal, which ends the process before serve()'s own cleanup runs (a registry outlived it).
                await anyio.to_thread.run_sync(registry_supervisor.stop)
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
    pages.install(app, services)
    return app


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One server per data directory: a second would requeue the first one's running operations."""
    path = Path(data_dir) / "server.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ContestkitError(
                f"Another contest server is already running on {data_dir}; stop it first or use another --data-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def serve(
    data_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    log_level: str = "info",
    run_registry: bool = True,
) -> None:
    """Run the API, the job queue and (``run_registry``) the team registry until interrupted
    (``contestkit server run``); the registry is stopped when the server stops."""
    import uvicorn

    data_dir = Path(data_dir).expanduser().absolute()
    config: ServerConfig = load_config(data_dir)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )
    with data_dir_lock(config.data_dir):
        supervisor = registry_supervision.supervisor_for(config, log) if run_registry else None
        app = create_app(config.data_dir, registry_supervisor=supervisor)
        if supervisor is not None:
            supervisor.start()
        try:
            cert, key = config.data_file(config.tls_cert), config.data_file(config.tls_key)
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)} if cert and key else {}
            # Forwarded headers only from the proxies server.yaml names (uvicorn trusts loopback by default).
            proxies = {"proxy_headers": bool(config.forwarded_allow_ips),
                       "forwarded_allow_ips": ",".join(config.forwarded_allow_ips) or ""}  # fmt: skip
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True, **tls, **proxies)
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            if exc.code not in (0, None):
                raise ContestkitError(
                    f"The server could not listen on {host}:{port} (in use, or not an address of this host); "
                    "choose another --host/--port."
                ) from None
        finally:
            if supervisor is not None:
                supervisor.stop()
