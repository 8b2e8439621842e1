"""The registry's realm and the team's view of its own repositories, as a FastAPI router.

- ``GET /rest/registry/token?service=...&scope=...`` is the token endpoint of the Docker registry
  token scheme: HTTP basic auth with a registry account, any number of ``scope`` parameters, and a
  short-lived signed token in return (the rules are in ``registry_auth``). ``docker login`` asks
  with no scope and gets a token with an empty ``access`` list; a scope the account may not have is
  simply left out of the token (200), and the registry then refuses the request it was for. Wrong
  credentials are a 401 with a ``Basic`` challenge.
- ``GET /rest/registry/repositories`` lists the caller's own repositories and tags: teams get no
  catalog from the registry (it would name every team's repositories), so the server reads it with
  an admin token of its own and keeps the team's namespace.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import requests
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from contestkit.errors import ContestkitError
from contestkit.server.config import ADMIN_USERNAME, EVALUATOR_USERNAME, REALM_PATH, ServerConfig
from contestkit.server.security import registry_auth
from contestkit.server.security.auth import encodable
from contestkit.server.security.registry_auth import Account, Issuer, Role, SigningKey
from contestkit.server.storage.db import Database, Team


class TokenAnswer(BaseModel):
    token: str = Field(description="the registry bearer token (a JWT signed by the contest server)")
    access_token: str = Field(description="the same token, under the OAuth 2 name")
    expires_in: int = Field(description="seconds the token is valid")
    issued_at: str = Field(description="RFC 3339 time the token was issued")


class RepositoriesAnswer(BaseModel):
    registry: str = Field(description="HOST:PORT/<namespace>")
    repositories: dict[str, list[str]] = Field(description="<namespace>/<repository> -> tags")


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class Realm:
    """Checks registry accounts and signs their tokens; the keys are read once, at start."""

    def __init__(self, config: ServerConfig, database: Database) -> None:
        self.config = config
        self.database = database
        self.credentials_key = registry_auth.read_credentials_key(config.credentials_key_path)
        self.issuer = Issuer(
            signing_key=SigningKey.load(config.token_key_path, config.token_cert_path),
            issuer=config.registry_issuer,
            service=config.registry_service,
            ttl_seconds=config.registry_token_ttl,
        )

    def team_password(self, team: Team) -> str:
        return registry_auth.team_password(self.credentials_key, team.id, team.registry_generation)

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account these credentials belong to, or None: an unknown user, a wrong password, or a
        team that is disabled or removed are all the same 401."""
        fixed = {
            EVALUATOR_USERNAME: (Role.EVALUATOR, self.config.evaluator_registry_password),
            ADMIN_USERNAME: (Role.ADMIN, self.config.registry_admin_password),
        }
        if username in fixed:
            role, expected = fixed[username]
            return Account(username, role) if expected and registry_auth.same_secret(password, expected) else None
        if not password.startswith(registry_auth.PASSWORD_PREFIX):
            return None
        if not encodable(username):
            return None
        with self.database.session() as session:
            team = session.scalar(select(Team).where(Team.registry_username == username))
            if team is None:
                registry_auth.same_secret(password, registry_auth.team_password(self.credentials_key, 0, -1))
                return None
            if not registry_auth.same_secret(password, self.team_password(team)):
                return None
            # A disabled or removed team keeps its derived password but gets no token: the lock-out
            # the host applied to its sessions applies to its images too (a purged team has no row).
            if team.disabled or team.removed_at is not None:
                return None
            return Account(username, Role.TEAM, team.namespace)

    def admin_token(self, scopes: list[str]) -> str:
        """A token for the server's own registry calls (the team's repository listing)."""
        admin = Account(ADMIN_USERNAME, Role.ADMIN)
        access = registry_auth.grant(admin, registry_auth.parse_scopes(scopes))
        return self.issuer.token(ADMIN_USERNAME, access)[0]


def router(realm: Realm, caller: Callable[..., Any]) -> APIRouter:
    """The realm and the repository listing; ``caller`` is the app's dependency for a logged-in team."""
    config, database = realm.config, realm.database
    routes = APIRouter(tags=["registry"])

    def refuse(status: int, detail: str, challenge: bool = False) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="contestkit registry"'} if challenge else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @routes.get(
        REALM_PATH,
        response_model=TokenAnswer,
        responses={401: {"description": "wrong registry credentials"}, 400: {"description": "another service"}},
    )
    def token(
        request: Request,
        service: str | None = Query(default=None, description="the registry's service name"),
        scope: list[str] = Query(default=[], description="type:name:actions, e.g. repository:team/agent:pull,push"),
    ) -> Any:
        """A short-lived registry token for the account in HTTP basic auth (the Docker token scheme)."""
        credentials = _basic_credentials(request)
        if credentials is None:
            return refuse(401, "Send the team's registry user name and password (HTTP basic auth).", challenge=True)
        account = realm.authenticate(*credentials)
        if account is None:
            return refuse(
                401,
                "Wrong registry user name or password: run `contestkit registry login` for the current ones.",
                challenge=True,
            )
        if service is not None and service != config.registry_service:
            return refuse(400, f"This server issues tokens for the service '{config.registry_service}' only.")
        access = registry_auth.grant(account, registry_auth.parse_scopes(scope))
        signed, expires_in, issued = realm.issuer.token(account.username, access)
        return registry_auth.token_response(signed, expires_in, issued)

    @routes.get("/rest/registry/repositories", response_model=RepositoriesAnswer)
    def repositories(who: Any = Depends(caller)) -> RepositoriesAnswer:
        """The team's repositories and their tags (the registry's catalog, cut to the team's namespace)."""
        with database.session() as session:
            team = session.get(Team, who.team_id)
            assert team is not None
            namespace = team.namespace
        base = config.registry_api()
        catalog_token = realm.admin_token(["registry:catalog:*"])
        names: list[str] = []
        last = ""
        while True:  # the registry pages its catalog (1000 names at most per page)
            page = _registry_json(f"{base}/v2/_catalog?n=1000&last={last}", catalog_token, config)
            found = [r for r in page.get("repositories") or [] if isinstance(r, str)]
            names += [r for r in found if r.startswith(namespace + "/")]
            if len(found) < 1000:
                break
            last = found[-1]
        names.sort()
        listing: dict[str, list[str]] = {}
        for name in names:
            tags = _registry_json(f"{base}/v2/{name}/tags/list", realm.admin_token([f"repository:{name}:pull"]), config)
            listing[name] = sorted(str(t) for t in tags.get("tags") or [])
        return RepositoriesAnswer(registry=f"{config.registry}/{namespace}", repositories=listing)

    return routes


def _registry_json(url: str, token: str, config: ServerConfig) -> dict[str, Any]:
    """A registry API answer; a tag list of a repository without tags (404) is empty."""
    try:
        response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except requests.RequestException as exc:
        raise ContestkitError(
            f"the registry {config.registry} cannot be reached ({type(exc).__name__}); start docker-registry"
        ) from None
    if response.status_code == 404:
        return {}
    if response.status_code != 200:
        raise ContestkitError(
            f"the registry {config.registry} answered HTTP {response.status_code} to the server's own token; "
            "check that it runs with the registry/config.yml that the server wrote"
        )
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
