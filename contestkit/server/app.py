"""The contest's HTTP API: the 2018 client's REST paths and JSON shapes, plus bearer tokens.

Paths, as the 2018 ``retro-contest`` client called them (it works against this server unchanged):

- ``POST /rest/login {email, password}`` sets the session cookie; ``POST /rest/logout`` ends it;
- ``GET /rest/user`` gives the team's registry: ``{"cr": {"url", "username", "password"}}``;
- ``POST /rest/job/start {tag}``; ``GET /rest/job/status``, ``/rest/job/status/all``, ``/rest/job/status/{id}``;
- ``POST /rest/job/kill``; ``POST /rest/job/restart``, ``/rest/job/restart/{id}``;
- ``GET /rest/leaderboard`` (public) ``{"leaderboard": [{"name", "score"}], "start": 1}``.

Every endpoint that needs a team accepts the session cookie or ``Authorization: Bearer <token>``
(tokens from ``POST /rest/token``). Errors are ``{"detail": "<one sentence that says what to do>"}``.
The OpenAPI description is at ``/openapi.json`` and browsable at ``/docs``.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, field_validator
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DataError, OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from contestkit import __version__
from contestkit.errors import ContestkitError
from contestkit.server import (
    admin_api,
    auth,
    boardcache,
    documents,
    final,
    housekeeping,
    leaderboards,
    limits,
    metrics,
    operations,
    pages,
    registry_api,
    registry_auth,
    results_api,
    throttle,
)
from contestkit.server.config import ServerConfig, load_config
from contestkit.server.db import AuthToken, Database, Team, now
from contestkit.server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotLoggedIn,
    Overloaded,
    QuotaExceeded,
    Refused,
    TooManyAttempts,
    Unavailable,
    WrongCredentials,
)
from contestkit.server.executors import Executor, load_executor
from contestkit.server.migrations import migrate
from contestkit.server.scheduling import Scheduler

log = logging.getLogger("contestkit.server")


# -- request and response shapes (they make the OpenAPI description) ------------------------------


# Text that is stored or looked up in the database: no NUL or other control characters (``limits``).
PlainText = Annotated[str, AfterValidator(limits.refuse_control_characters)]


class LoginRequest(BaseModel):
    email: PlainText
    password: str  # never stored nor looked up (only hashed), so any text is checked as a password


class LoginResponse(BaseModel):
    team: str
    expires: float = Field(description="UNIX time at which the session ends")


class Registry(BaseModel):
    url: str = Field(description="HOST:PORT/<namespace>: tag images as <url>/<repository>:<tag>")
    username: str
    password: str
    scheme: str = Field(description="http or https, for registry API calls such as the catalog")


class UserResponse(BaseModel):
    cr: Registry
    name: str
    email: str


class StartRequest(BaseModel):
    tag: PlainText = Field(description="TAG or REPOSITORY:TAG inside the team's registry namespace")
    digest: PlainText | None = Field(default=None, description="sha256:... of the pushed manifest, to pin the image")


class WorkerStatus(BaseModel):
    task: str
    state: str
    eta: float | None = None
    progress: float | None = Field(default=None, description="0..1")
    score: float | None = None
    error: str | None = None
    game: str | None = None
    level: str | None = None
    timesteps: int | None = None
    episodes: int | None = None
    mean_episode_reward: float | None = Field(default=None, description="of the episodes so far (running mean)")
    seed: int | None = Field(default=None, description="the level's seed: the attempt's seed + the level's index")


class JobStatus(BaseModel):
    id: int
    status: str = Field(
        description="queued, running, finished, failed or cancelled; stalled: running, but its server has not "
        "reported for the heartbeat timeout"
    )
    score: float | None = None
    error: str | None = None
    tag: str | None = None
    image: str | None = None
    digest: str | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    attempt: int | None = None
    resumes: int | None = None
    seed: int | None = Field(default=None, description="the attempt's seed, drawn when it first starts")
    cancel_requested: bool | None = None
    workers: list[WorkerStatus]


JOB_STATUS: TypeAdapter[JobStatus] = TypeAdapter(JobStatus)
JOB_STATUSES: TypeAdapter[list[JobStatus]] = TypeAdapter(list[JobStatus])


class LeaderboardRow(BaseModel):
    name: str
    score: float
    job: int | None = None
    finished: float | None = None
    baseline: bool | None = Field(default=None, description="true: the host's baseline, not a team")


class LeaderboardResponse(BaseModel):
    leaderboard: list[LeaderboardRow]
    start: int = 1
    ranking: str | None = Field(default=None, description="latest or best: which finished job of a team counts")
    level: str | None = Field(default=None, description="GAME/STATE when this is one level's view")
    frozen: float | None = Field(default=None, description="frozen at this UNIX time: later jobs do not count")


class TokenRequest(BaseModel):
    name: PlainText | None = Field(default=None, max_length=128)
    email: PlainText | None = Field(default=None, description="with password: mint a token without a session")
    password: str | None = None
    expires_in_days: float | None = Field(default=None, gt=0, description="none: the token does not expire")

    @field_validator("name")
    @classmethod
    def _storable_name(cls, value: str | None) -> str | None:
        if value is not None and not auth.encodable(value):
            raise ValueError("not valid text (an unpaired surrogate); choose another name")
        return value


class TokenResponse(BaseModel):
    id: int
    token: str = Field(description="shown once; send it as Authorization: Bearer <token>")
    name: str | None = None
    expires: float | None = None


class TokenInfo(BaseModel):
    id: int
    name: str | None = None
    created: float
    expires: float | None = None
    last_used: float | None = None


class Message(BaseModel):
    ok: bool = True
    detail: str | None = None


def _sendable(detail: str) -> str:
    """An error sentence that can be sent as UTF-8 even when it quotes undecodable input."""
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")


# The one place where what went wrong becomes an HTTP status (``errors`` says why it lives here).
STATUS_OF: dict[type[Refused], int] = {
    NotLoggedIn: 401,
    WrongCredentials: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    TooManyAttempts: 429,
    QuotaExceeded: 429,
    Overloaded: 503,
    Unavailable: 503,
}
UNAVAILABLE = 503  # the database or the data directory refuses writes (read-only, full, down)
MISCONFIGURED = 503  # any other ContestkitError: the server's own setup is wrong, not the request
INVALID_REQUEST = 422  # a body or path that does not fit the request's shape (FastAPI's validation)
MAX_PAGE = 1000  # the most jobs one `status/all` page returns when the caller asks for a page


def status_of(exc: Refused) -> int:
    """The HTTP status of a refusal (the API's and the pages' answers alike)."""
    return next(code for kind, code in STATUS_OF.items() if isinstance(exc, kind))


def error_answer(exc: Exception) -> JSONResponse:
    """The API's answer to a refusal or a failure: its status, ``{"detail": sentence}`` and headers."""
    headers: dict[str, str] = {}
    if isinstance(exc, RequestValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        status, detail = INVALID_REQUEST, "Invalid request (" + "; ".join(problems) + ")."
    elif isinstance(exc, Refused):
        status = status_of(exc)
        detail = str(exc)
        if isinstance(exc, NotLoggedIn):
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, (TooManyAttempts, Overloaded)) and exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, DataError):
        # A backstop for text the request models let through that the database cannot hold.
        status, detail = INVALID_REQUEST, "The request holds text the database cannot store (a NUL?); remove it."
    elif isinstance(exc, (OperationalError, OSError)):
        log.error("the database or data directory refused a write: %s", exc)
        status, detail = UNAVAILABLE, (
            "The contest server cannot store anything right now (its data directory is read-only or full, or "
            "its database is down); try again in a few minutes."
        )
    else:
        log.error("request failed: %s", exc)
        status, detail = MISCONFIGURED, f"The contest server is misconfigured: {exc}"
    return JSONResponse({"detail": _sendable(detail)}, status_code=status, headers=headers or None)


# -- who is asking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    team_id: int
    team_name: str
    token_id: int
    kind: str


def _token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(auth.SESSION_COOKIE)


_DISABLED = "Your team is disabled by the organisers; ask them to enable it again."
_NOT_LOGGED_IN = "Not logged in: run `contestkit login` (scripts: send Authorization: Bearer <token>)."


# -- the application -----------------------------------------------------------------------------


def create_app(
    data_dir: Path | str,
    *,
    executor: Executor | None = None,
    start_scheduler: bool = True,
) -> FastAPI:
    """The API for the contest in ``data_dir``; the scheduler runs inside the same process."""
    config = load_config(data_dir)
    database = Database(config.database())
    migrate(database)
    for note in registry_auth.prepare_data_dir(config):  # upgrades a data directory made for htpasswd
        log.warning("%s", note)
    realm = registry_api.Realm(config, database)
    scheduler = Scheduler(database, config, executor or load_executor(config))
    guard = throttle.LoginGuard(
        registry_auth.read_credentials_key(config.credentials_key_path),
        window=config.login_window_seconds,
        account_limit=config.login_account_limit,
        client_limit=config.login_client_limit,
        device_limit=config.login_account_limit,
    )
    hashes = auth.HashPool()
    sweeper = housekeeping.Sweeper(database, config.sweep_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.worker_threads  # see the setting
        if start_scheduler:
            scheduler.start()
        sweeper.start()
        try:
            yield
        finally:
            sweeper.stop()
            if start_scheduler:
                scheduler.stop()
            database.dispose()
            hashes.close()

    app = FastAPI(
        title="contestkit contest server",
        version=__version__,
        description=(
            "Self-hosted Retro contest API, compatible with the 2018 OpenAI Retro Contest client. "
            "Authenticate with the session cookie from POST /rest/login or with Authorization: Bearer <token>."
        ),
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.database = database
    app.state.scheduler = scheduler
    app.state.metrics = server_metrics = metrics.Metrics(database, scheduler.executor, config.heartbeat_timeout)
    app.add_middleware(metrics.LatencyMiddleware)

    async def _answer(_request: Request, exc: Exception) -> JSONResponse:
        return error_answer(exc)

    for kind in (Refused, ContestkitError, RequestValidationError, DataError, OperationalError, OSError):
        app.add_exception_handler(kind, _answer)
    app.add_middleware(limits.RequestLimits, session_cookie=auth.SESSION_COOKIE, public_url=config.server_url)

    def caller(request: Request) -> Caller:
        token = _token_from(request)
        if not token:
            raise NotLoggedIn(_NOT_LOGGED_IN)
        # One joined query without ORM objects: this runs on every signed-in request, and on 2
        # cores the ORM's two loads (token, then team) were half of what a status read cost.
        with database.session() as db:
            row = db.execute(
                select(AuthToken.id, AuthToken.kind, AuthToken.expires_at, AuthToken.last_used_at,
                       Team.id, Team.name, Team.disabled)
                .join(Team, Team.id == AuthToken.team_id)
                .where(AuthToken.token_hash == auth.token_digest(token))
            ).first()  # fmt: skip
            if row is None:
                raise NotLoggedIn("Your session or token is not valid (logged out?): run `contestkit login`.")
            token_id, kind, expires_at, last_used_at, team_id, team_name, disabled = row
            stamp = now()
            if expires_at is not None and expires_at <= stamp:
                # Committed when the block ends: an expired secret is gone for good.
                db.execute(delete(AuthToken).where(AuthToken.id == token_id))
            else:
                if last_used_at is None or stamp - last_used_at > 60:
                    db.execute(update(AuthToken).where(AuthToken.id == token_id).values(last_used_at=stamp))
                if disabled:
                    raise Forbidden(_DISABLED)
                return Caller(team_id=team_id, team_name=team_name, token_id=token_id, kind=kind)
        what = "session" if kind == "session" else "API token"
        raise NotLoggedIn(f"Your {what} expired: run `contestkit login` again.")

    # -- sessions --

    def find_team(email: str) -> tuple[int, str, bool] | None:
        # An email that is not valid text (a lone surrogate) cannot be stored, so no team has it.
        if not auth.encodable(email):
            return None
        with database.session() as db:
            found = db.execute(select(Team.id, Team.password_hash, Team.disabled).where(Team.email == email)).first()
            return (found[0], found[1], bool(found[2])) if found else None

    def store_rehash(team_id: int, password_hash: str) -> None:
        with database.session() as db:
            team = db.get(Team, team_id)
            if team is not None:
                team.password_hash = password_hash

    async def check_password(request: Request, email: str, password: str) -> tuple[int, bool]:
        """The team whose email and password these are, and whether the client is a known device.

        The throttle admits the check first (``throttle``), then the password is hashed on the hash
        pool, never on the request threads; wrong credentials and unknown emails cost the same."""
        device = guard.device_of(request.cookies.get(throttle.DEVICE_COOKIE), email)
        ticket = guard.admit(email, request.client.host if request.client else "", device)
        try:
            with hashes.slot():  # a full pool refuses before any other work is done
                found = await run_in_threadpool(find_team, email)
                right = await hashes.compute(auth.verify_password, found[1] if found else None, password)
        except BaseException:
            guard.abandoned(ticket)
            raise
        if not right or found is None:
            metrics.login_failed()
            raise WrongCredentials("Wrong email or password; check both, or ask the organisers to reset it.")
        guard.succeeded(ticket)
        if found[2]:
            raise Forbidden(_DISABLED)
        if auth.needs_rehash(found[1]):
            await run_in_threadpool(store_rehash, found[0], str(await hashes.run(auth.hash_password, password)))
        return found[0], device is not None

    def open_session(team_id: int) -> tuple[str, float, str]:
        token = auth.new_secret()
        expires = now() + config.session_ttl_hours * 3600.0
        with database.session() as db:
            team = db.get(Team, team_id)
            assert team is not None
            db.add(AuthToken(team_id=team.id, kind="session", token_hash=auth.token_digest(token), expires_at=expires))
            return token, expires, team.name

    @app.post("/rest/login", response_model=LoginResponse, tags=["auth"])
    async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
        """Check the team's email and password and start a session (cookie ``contestkit_session``).

        It also sets ``contestkit_device``, which lets this client log in to this account again while
        someone else's wrong guesses have it throttled (see ``throttle``)."""
        email = body.email.strip().lower()
        team_id, known_device = await check_password(request, email, body.password)
        token, expires, name = await run_in_threadpool(open_session, team_id)
        response.set_cookie(
            auth.SESSION_COOKIE,
            token,
            max_age=int(config.session_ttl_hours * 3600.0),
            httponly=True,
            samesite="lax",
            secure=config.cookie_secure,
            path="/",
        )
        if not known_device:
            response.set_cookie(
                throttle.DEVICE_COOKIE,
                guard.device_cookie(email),
                max_age=throttle.DEVICE_COOKIE_DAYS * 86400,
                httponly=True,
                samesite="lax",
                secure=config.cookie_secure,
                path="/rest",
            )
        return LoginResponse(team=name, expires=expires)

    @app.post("/rest/logout", response_model=Message, tags=["auth"])
    def logout(request: Request, response: Response) -> Message:
        """End this session (or revoke this bearer token); succeeds when not logged in too."""
        token = _token_from(request)
        if token:
            with database.session() as db:
                row = db.scalar(select(AuthToken).where(AuthToken.token_hash == auth.token_digest(token)))
                if row is not None:
                    db.delete(row)
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return Message(detail="logged out")

    def mint_token(team_id: int, body: TokenRequest) -> TokenResponse:
        token = auth.new_secret(auth.TOKEN_PREFIX)
        expires = now() + body.expires_in_days * 86400 if body.expires_in_days else None
        with database.session() as db:
            row = AuthToken(
                team_id=team_id, kind="api", name=body.name, token_hash=auth.token_digest(token), expires_at=expires
            )
            db.add(row)
            db.flush()
            return TokenResponse(id=row.id, token=token, name=body.name, expires=expires)

    @app.post("/rest/token", response_model=TokenResponse, status_code=201, tags=["auth"])
    async def create_token(body: TokenRequest, request: Request) -> TokenResponse:
        """Create an API token for scripts, from a session/token or from ``email`` + ``password``."""
        if body.email is not None or body.password is not None:
            email = (body.email or "").strip().lower()
            team_id, _ = await check_password(request, email, body.password or "")
        else:
            team_id = (await run_in_threadpool(caller, request)).team_id
        return await run_in_threadpool(mint_token, team_id, body)

    @app.get("/rest/tokens", response_model=list[TokenInfo], tags=["auth"])
    def list_tokens(who: Caller = Depends(caller)) -> list[TokenInfo]:
        """The team's API tokens (their secrets are never shown again)."""
        with database.session() as db:
            rows = db.scalars(
                select(AuthToken)
                .where(AuthToken.team_id == who.team_id, AuthToken.kind == "api")
                .order_by(AuthToken.id)
            )
            return [
                TokenInfo(id=r.id, name=r.name, created=r.created_at, expires=r.expires_at, last_used=r.last_used_at)
                for r in rows
            ]

    @app.delete("/rest/token/{token_id}", response_model=Message, tags=["auth"])
    def delete_token(token_id: int, who: Caller = Depends(caller)) -> Message:
        """Revoke one of the team's API tokens."""
        with database.session() as db:
            # An id beyond the integer column is "no such token", not a database error.
            row = db.get(AuthToken, token_id) if 1 <= token_id <= operations.MAX_ID else None
            if row is None or row.team_id != who.team_id or row.kind != "api":
                raise NotFound(f"Your team has no API token {token_id}.")
            db.delete(row)
        return Message(detail=f"token {token_id} revoked")

    @app.get("/rest/user", response_model=UserResponse, tags=["team"])
    def user(who: Caller = Depends(caller)) -> UserResponse:
        """The team's container registry: push to ``<cr.url>/<repository>:<tag>``."""
        with database.session() as db:
            team = db.get(Team, who.team_id)
            assert team is not None
            return UserResponse(
                cr=Registry(
                    url=f"{config.registry}/{team.namespace}",
                    username=team.registry_username,
                    password=realm.team_password(team),
                    scheme=config.registry_scheme,
                ),
                name=team.name,
                email=team.email,
            )

    app.include_router(registry_api.router(realm, caller))
    app.include_router(results_api.router(config, database, caller))
    app.include_router(admin_api.router(database, config, caller, scheduler))
    app.include_router(final.router(database, config, caller))

    # -- jobs --

    def job_document(job: Any) -> dict[str, Any]:
        """A job as its team sees it: stalled, not running, once its heartbeat is stale."""
        return documents.job_document(job, stale_after=config.heartbeat_timeout)

    @app.post(
        "/rest/job/start", response_model=JobStatus, response_model_exclude_none=True, status_code=201, tags=["jobs"]
    )
    def start(body: StartRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Queue a job for the team's image ``<registry>/<namespace>/<repository>:<tag>``; one at a time."""
        job = operations.start_job(database, config, who.team_id, body.tag, body.digest)
        scheduler.wake()
        return job_document(job)

    async def team_read(request: Request, adapter: TypeAdapter[Any], read: Callable[[Any, Caller], Any]) -> Response:
        """A signed-in read in one hop to a worker thread: who asks, the query, the JSON.

        Why not the usual sync dependency and sync endpoint: FastAPI then hands each request to a
        worker thread three times (the caller, the endpoint, the response's validation), and on
        2 cores those hand-offs, not the queries, were most of what ``status/<id>`` cost."""

        def work() -> bytes:
            who = caller(request)
            with database.session() as db:
                document = read(db, who)
            return adapter.dump_json(adapter.validate_python(document), exclude_none=True)

        return Response(await run_in_threadpool(work), media_type="application/json")

    @app.get("/rest/job/status", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    async def status_latest(request: Request) -> Response:
        """The team's latest job."""
        return await team_read(
            request, JOB_STATUS, lambda db, who: job_document(operations.latest_job(db, who.team_id))
        )

    @app.get("/rest/job/status/all", response_model=list[JobStatus], response_model_exclude_none=True, tags=["jobs"])
    async def status_all(
        request: Request,
        limit: int | None = Query(None, ge=1, le=MAX_PAGE, description="At most this many jobs (default: all)."),
        before: int | None = Query(None, ge=1, description="Only jobs older than this job id (the next page)."),
    ) -> Response:
        """The team's jobs, newest first; ``limit`` and ``before`` page through a long history."""
        return await team_read(
            request,
            JOB_STATUSES,
            lambda db, who: [
                job_document(job) for job in operations.all_jobs(db, who.team_id, limit=limit, before=before)
            ],
        )

    @app.get("/rest/job/status/{job_id}", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    async def status_one(job_id: int, request: Request) -> Response:
        """One of the team's jobs (another team's job is 404)."""
        return await team_read(
            request, JOB_STATUS, lambda db, who: job_document(operations.get_job(db, who.team_id, job_id))
        )

    def _kill(who: Caller, job_id: int | None) -> dict[str, Any]:
        job = operations.kill_job(database, who.team_id, job_id)
        scheduler.cancel(job.id)
        return job_document(job)

    @app.post("/rest/job/kill", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    def kill(who: Caller = Depends(caller)) -> dict[str, Any]:
        """Cancel the team's queued or running job."""
        return _kill(who, None)

    @app.post("/rest/job/kill/{job_id}", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    def kill_one(job_id: int, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Cancel one job of the team (it must be queued or running)."""
        return _kill(who, job_id)

    @app.post("/rest/job/restart", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    def restart(who: Caller = Depends(caller)) -> dict[str, Any]:
        """Run the team's latest job again (a new attempt with the same id and image)."""
        job = operations.restart_job(database, config, who.team_id, None)
        scheduler.wake()
        return job_document(job)

    @app.post("/rest/job/restart/{job_id}", response_model=JobStatus, response_model_exclude_none=True, tags=["jobs"])
    def restart_one(job_id: int, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Run one of the team's finished, failed or cancelled jobs again."""
        job = operations.restart_job(database, config, who.team_id, job_id)
        scheduler.wake()
        return job_document(job)

    # -- public --

    def build_board(db: Any) -> bytes:
        document = LeaderboardResponse.model_validate(leaderboards.public_board(db, config))
        return document.model_dump_json(exclude_none=True).encode("utf-8")

    board_cache = boardcache.BoardCache(database, build_board)

    @app.get(
        "/rest/leaderboard", response_model=LeaderboardResponse, response_model_exclude_none=True, tags=["contest"]
    )
    async def board(level: str | None = None) -> Response:
        """Each team's latest (or best) finished job, best first; ``level=GAME/STATE``: that level's view.
        Public, as in 2018; frozen from ``freeze_at`` on. The whole board is cached (``boardcache``):
        while nothing changed it is answered here, on the event loop, without a thread or a query."""
        if level is None:
            body = board_cache.peek()
            if body is None:
                body = await run_in_threadpool(board_cache.get)
            return Response(body, media_type="application/json")
        return await run_in_threadpool(level_board, level)

    def level_board(level: str) -> Response:
        with database.session() as db:
            document = LeaderboardResponse.model_validate(leaderboards.public_board(db, config, level=level))
        return Response(document.model_dump_json(exclude_none=True), media_type="application/json")

    @app.get("/rest/health", tags=["contest"])
    def health() -> JSONResponse:
        """For load balancers and the tests: the server is up, its database answers (else 503), and
        whether the engine that runs level-runs answers (reported; the API works without it)."""
        try:
            with database.session() as db:
                db.scalar(select(Team.id).limit(1))
            database_ok, database_detail = True, "the database answers"
        except SQLAlchemyError as exc:
            database_ok, database_detail = False, f"the database does not answer ({type(exc).__name__})"
        executor_ok, executor_detail = server_metrics.probe.check()
        document = {
            "ok": database_ok,
            "version": __version__,
            "database": {"ok": database_ok, "detail": database_detail},
            "executor": {"name": scheduler.executor.name, "ok": executor_ok, "detail": executor_detail},
        }
        return JSONResponse(document, status_code=200 if database_ok else 503)

    @app.get("/metrics", tags=["contest"], include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus' text format: the queue, running level-runs, their speed, latency, failed logins."""
        body, content_type = server_metrics.exposition()
        return Response(body, media_type=content_type)

    pages.install(
        app,
        database=database,
        config=config,
        executor=scheduler.executor.name,
        api=pages.ApiFunctions(
            caller=caller,
            login=login,
            login_body=lambda email, password: LoginRequest(email=email, password=password),
            logout=logout,
            cancel=lambda job_id, who: _kill(who, job_id),
            restart=restart_one,
            refused=(Refused,),
            status_of=status_of,
        ),
    )
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


def serve(data_dir: Path | str, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Run the API and the job queue until interrupted (``contestkit server run``)."""
    import uvicorn

    data_dir = Path(data_dir).expanduser().absolute()
    config: ServerConfig = load_config(data_dir)
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )
    with data_dir_lock(config.data_dir):
        app = create_app(config.data_dir)
        try:
            cert, key = config.data_file(config.tls_cert), config.data_file(config.tls_key)
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)} if cert and key else {}
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True, **tls)
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            if exc.code not in (0, None):
                raise ContestkitError(
                    f"The server could not listen on {host}:{port} (in use, or not an address of this host); "
                    "choose another --host/--port."
                ) from None
