"""Signing in and out, API tokens, and the team's registry account (``/rest/login``, ``/rest/token``...).

The work of signing in (the throttle, the hash pool, the cookies) is ``deps.sign_in``'s, which the
sign-in page calls too; these routes only give it the API's request and answer shapes.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from contestkit.server.api import deps
from contestkit.server.api.deps import CallerDep, PlainText, ServicesDep
from contestkit.server.errors import NotFound
from contestkit.server.queue import operations
from contestkit.server.security import auth
from contestkit.server.storage.db import AuthToken, Team, now

router = APIRouter()


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


class TokenRequest(BaseModel):
    name: PlainText | None = Field(default=None, max_length=128)
    email: PlainText | None = Field(default=None, description="with password: mint a token without a session")
    password: str | None = None
    expires_in_days: float | None = Field(
        default=None, gt=0, le=auth.API_TOKEN_MAX_DAYS, allow_inf_nan=False,
        description=f"days the token is valid; none: {auth.API_TOKEN_DAYS:g}; at most {auth.API_TOKEN_MAX_DAYS:g}",
    )  # fmt: skip

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


@router.post("/rest/login", response_model=LoginResponse, tags=["auth"])
async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
    """Check the team's email and password and start a session (cookie ``contestkit_session``).

    It also sets ``contestkit_device``, which lets this client log in to this account again while
    someone else's wrong guesses have it throttled (see ``throttle``)."""
    name, expires = await deps.sign_in(request, response, body.email, body.password)
    return LoginResponse(team=name, expires=expires)


@router.post("/rest/logout", response_model=Message, tags=["auth"])
def logout(request: Request, response: Response) -> Message:
    """End this session (or revoke this bearer token); succeeds when not logged in too."""
    deps.sign_out(request, response)
    return Message(detail="logged out")


def _mint_token(found: deps.Services, team_id: int, body: TokenRequest) -> TokenResponse:
    token = auth.new_secret(auth.TOKEN_PREFIX)
    expires = now() + (body.expires_in_days or auth.API_TOKEN_DAYS) * 86400
    with found.database.session() as db:
        row = AuthToken(
            team_id=team_id, kind="api", name=body.name, token_hash=auth.token_digest(token), expires_at=expires
        )
        db.add(row)
        db.flush()
        return TokenResponse(id=row.id, token=token, name=body.name, expires=expires)


@router.post("/rest/token", response_model=TokenResponse, status_code=201, tags=["auth"])
async def create_token(body: TokenRequest, request: Request) -> TokenResponse:
    """Create an API token for scripts, from a session/token or from ``email`` + ``password``."""
    if body.email is not None or body.password is not None:
        email = (body.email or "").strip().lower()
        team_id, _ = await deps.check_password(request, email, body.password or "")
    else:
        team_id = (await run_in_threadpool(deps.caller, request)).team_id
    return await run_in_threadpool(_mint_token, deps.services_of(request), team_id, body)


@router.get("/rest/tokens", response_model=list[TokenInfo], tags=["auth"])
def list_tokens(who: CallerDep, found: ServicesDep) -> list[TokenInfo]:
    """The team's API tokens (their secrets are never shown again)."""
    with found.database.session() as db:
        rows = db.scalars(
            select(AuthToken).where(AuthToken.team_id == who.team_id, AuthToken.kind == "api").order_by(AuthToken.id)
        )
        return [
            TokenInfo(id=r.id, name=r.name, created=r.created_at, expires=r.expires_at, last_used=r.last_used_at)
            for r in rows
        ]


@router.delete("/rest/token/{token_id}", response_model=Message, tags=["auth"])
def delete_token(token_id: int, who: CallerDep, found: ServicesDep) -> Message:
    """Revoke one of the team's API tokens."""
    with found.database.session() as db:
        # An id beyond the integer column is "no such token", not a database error.
        row = db.get(AuthToken, token_id) if 1 <= token_id <= operations.MAX_ID else None
        if row is None or row.team_id != who.team_id or row.kind != "api":
            raise NotFound(f"Your team has no API token {token_id}.")
        db.delete(row)
    return Message(detail=f"token {token_id} revoked")


@router.get("/rest/user", response_model=UserResponse, tags=["team"])
def user(who: CallerDep, found: ServicesDep) -> UserResponse:
    """The team's container registry: push to ``<cr.url>/<repository>:<tag>``."""
    config = found.config
    with found.database.session() as db:
        team = db.get(Team, who.team_id)
        assert team is not None
        return UserResponse(
            cr=Registry(
                url=f"{config.registry}/{team.namespace}",
                username=team.registry_username,
                password=found.realm.team_password(team),
                scheme=config.registry_scheme,
            ),
            name=team.name,
            email=team.email,
        )
