"""What every route group shares: the server's services, who is asking, signing in and out, job actions.

Why one module: the API's routers and the browser pages (``pages``) must decide the same things the
same way (who a session belongs to, when a login is throttled, what cancelling a job does), so they
depend on these functions rather than on each other. The services are built once by ``create_app``
and kept on ``app.state.services``; a route asks for them with ``Depends(services)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import AfterValidator
from sqlalchemy import delete, select, update
from starlette.concurrency import run_in_threadpool

from contestkit.server import metrics
from contestkit.server.api import documents, jobdocs
from contestkit.server.api.registry import Realm
from contestkit.server.config import ServerConfig
from contestkit.server.contest import boardcache
from contestkit.server.contest.phases import Clock
from contestkit.server.deployment.registry_supervision import RegistryWatch
from contestkit.server.errors import Forbidden, NotLoggedIn, WrongCredentials
from contestkit.server.queue import operations
from contestkit.server.queue.doorbell import SchedulerLink
from contestkit.server.queue.scheduling import Scheduler
from contestkit.server.security import auth, limits, throttle
from contestkit.server.storage.db import AuthToken, Database, Job, Team, now

# Text that is stored or looked up in the database: no NUL or other control characters (``limits``).
PlainText = Annotated[str, AfterValidator(limits.refuse_control_characters)]

DISABLED = "Your team is disabled by the organisers; ask them to enable it again."
NOT_LOGGED_IN = "Not logged in: run `contestkit login` (scripts: send Authorization: Bearer <token>)."


@dataclass(frozen=True)
class Services:
    """The server's long-lived parts, built once per app by ``create_app``."""

    config: ServerConfig
    database: Database
    scheduler: Scheduler | SchedulerLink  # the link in an API worker process (``server run --workers N``)
    realm: Realm
    guard: throttle.LoginGuard
    hashes: auth.HashPool
    metrics: metrics.Metrics
    board_cache: boardcache.BoardCache
    ended_jobs: jobdocs.EndedJobDocuments
    registry: RegistryWatch  # the team registry's health (and its supervisor under `server run`)
    clock: Clock = now  # when sessions expire; tests inject one to advance time instead of sleeping


def services_of(request: Request) -> Services:
    """The services of the app serving ``request``."""
    found: Services = request.app.state.services
    return found


async def services(request: Request) -> Services:
    """The dependency form of ``services_of`` (async: no worker-thread hop for reading an attribute)."""
    return services_of(request)


# -- who is asking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    team_id: int
    team_name: str
    token_id: int
    kind: str


def token_from(request: Request) -> str | None:
    """The bearer token, else the session cookie, of a request."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(auth.SESSION_COOKIE)


def caller(request: Request) -> Caller:
    """The team whose session or token came with the request; refuses (``NotLoggedIn``, ``Forbidden``) otherwise."""
    token = token_from(request)
    if not token:
        raise NotLoggedIn(NOT_LOGGED_IN)
    database = services_of(request).database
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
        stamp = services_of(request).clock()
        if expires_at is not None and expires_at <= stamp:
            # Committed when the block ends: an expired secret is gone for good.
            db.execute(delete(AuthToken).where(AuthToken.id == token_id))
        else:
            if last_used_at is None or stamp - last_used_at > 60:
                db.execute(update(AuthToken).where(AuthToken.id == token_id).values(last_used_at=stamp))
            if disabled:
                raise Forbidden(DISABLED)
            return Caller(team_id=team_id, team_name=team_name, token_id=token_id, kind=kind)
    what = "session" if kind == "session" else "API token"
    raise NotLoggedIn(f"Your {what} expired: run `contestkit login` again.")


CallerDep = Annotated[Caller, Depends(caller)]
ServicesDep = Annotated[Services, Depends(services)]


# -- signing in and out ---------------------------------------------------------------------------


def _find_team(database: Database, email: str) -> tuple[int, str, bool] | None:
    # An email that is not valid text (a lone surrogate) cannot be stored, so no team has it.
    if not auth.encodable(email):
        return None
    with database.session() as db:
        found = db.execute(select(Team.id, Team.password_hash, Team.disabled).where(Team.email == email)).first()
        return (found[0], found[1], bool(found[2])) if found else None


def _store_rehash(database: Database, team_id: int, password_hash: str) -> None:
    with database.session() as db:
        team = db.get(Team, team_id)
        if team is not None:
            team.password_hash = password_hash


async def check_password(request: Request, email: str, password: str) -> tuple[int, bool]:
    """The team whose email and password these are, and whether the client is a known device.

    The throttle admits the check first (``throttle``), then the password is hashed on the hash
    pool, never on the request threads; wrong credentials and unknown emails cost the same. The
    throttle's counts are in the database, so it is asked on a thread, and a login that a full pool
    refuses anyway is not counted (no write): it only reads whether it is throttled (429 then, as
    before), else it gets the pool's 503."""
    found_services = services_of(request)
    guard, hashes, database = found_services.guard, found_services.hashes, found_services.database
    device = guard.device_of(request.cookies.get(throttle.DEVICE_COOKIE), email)
    client = request.client.host if request.client else ""
    if hashes.full():
        await run_in_threadpool(guard.refuse_if_throttled, email, client, device)
        raise hashes.refusal()
    ticket = await run_in_threadpool(guard.admit, email, client, device)
    try:
        with hashes.slot():  # a pool that filled up meanwhile refuses before any other work is done
            found = await run_in_threadpool(_find_team, database, email)
            right = await hashes.compute(auth.verify_password, found[1] if found else None, password)
    except BaseException:
        guard.abandoned(ticket)  # not awaited on a thread: this path may be a cancellation
        raise
    if not right or found is None:
        metrics.login_failed()
        raise WrongCredentials("Wrong email or password; check both, or ask the organisers to reset it.")
    await run_in_threadpool(guard.succeeded, ticket)
    if found[2]:
        raise Forbidden(DISABLED)
    if auth.needs_rehash(found[1]):
        rehashed = str(await hashes.run(auth.hash_password, password))
        await run_in_threadpool(_store_rehash, database, found[0], rehashed)
    return found[0], device is not None


def _open_session(found: Services, team_id: int) -> tuple[str, float, str]:
    token = auth.new_secret()
    expires = found.clock() + found.config.session_ttl_hours * 3600.0
    with found.database.session() as db:
        team = db.get(Team, team_id)
        assert team is not None
        db.add(AuthToken(team_id=team.id, kind="session", token_hash=auth.token_digest(token), expires_at=expires))
        return token, expires, team.name


async def sign_in(request: Request, response: Response, email: str, password: str) -> tuple[str, float]:
    """Check the email and password, start a session and set its cookies on ``response``.

    Returns the team's name and when the session ends. It also sets ``contestkit_device``, which lets
    this client log in to this account again while someone else's wrong guesses have it throttled."""
    found = services_of(request)
    config = found.config
    email = email.strip().lower()
    team_id, known_device = await check_password(request, email, password)
    token, expires, name = await run_in_threadpool(_open_session, found, team_id)
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=int(config.session_ttl_hours * 3600.0),
        httponly=True,
        samesite="lax",
        secure=config.secure_cookies(),
        path="/",
    )
    if not known_device:
        response.set_cookie(
            throttle.DEVICE_COOKIE,
            found.guard.device_cookie(email),
            max_age=throttle.DEVICE_COOKIE_DAYS * 86400,
            httponly=True,
            samesite="lax",
            secure=config.secure_cookies(),
            path="/rest",
        )
    return name, expires


def sign_out(request: Request, response: Response) -> None:
    """End this session (or revoke this bearer token) and drop the cookie; nothing to do when not logged in."""
    token = token_from(request)
    if token:
        with services_of(request).database.session() as db:
            row = db.scalar(select(AuthToken).where(AuthToken.token_hash == auth.token_digest(token)))
            if row is not None:
                db.delete(row)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")


# -- what a team does to its jobs -----------------------------------------------------------------


def cancel_job(found: Services, who: Caller, job_id: int | None) -> Job:
    """Cancel the team's job ``job_id`` (None: its queued or running one) and stop its level-runs."""
    job = operations.kill_job(found.database, who.team_id, job_id)
    found.scheduler.cancel(job.id)
    return job


def restart_job(found: Services, who: Caller, job_id: int | None) -> Job:
    """Run the team's job ``job_id`` (None: its latest) again, and wake the scheduler for it."""
    job = operations.restart_job(found.database, found.config, who.team_id, job_id)
    found.scheduler.wake()
    return job


def job_status(found: Services, job: Job) -> documents.JobStatus:
    """A job as its team sees it: stalled, not running, once its heartbeat is stale (``documents``)."""
    return documents.job_status(job, stale_after=found.config.heartbeat_timeout)
