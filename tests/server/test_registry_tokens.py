"""Each team's registry namespace is its own: the contest server issues the registry's tokens.

Everything here runs against the real Debian ``docker-registry`` (with the configuration that
``contestkit server init`` writes), the real contest server process and, for the ``docker`` tests,
the real Docker engine. Each refusal is checked in the registry's own answer (its HTTP status, or the
engine's error after talking to it), never only in ours; each refusal has a positive control next to
it that shows the same request goes through when it should, so that no test passes because nothing
works. The grant rules are also tested directly, as functions.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from contestkit.errors import ContestkitError
from contestkit.server.config import ADMIN_USERNAME, EVALUATOR_USERNAME, load_config
from contestkit.server.contest import teams
from contestkit.server.security import auth, registry_auth
from contestkit.server.security.registry_auth import Account, Issuer, Role, SigningKey, grant, parse_scopes
from tests.support.commands import find_free_port, run_cli, subprocess_env

# The module-scoped stack below is built once for many tests, so it calls the plain helpers behind
# the shared fixtures of tests/conftest.py rather than the (per-test) fixtures themselves.
from tests.support.contest import Contest, ServerProcess, init_contest, unique_team
from tests.support.docker import tiny_image
from tests.support.paths import PASSWORD
from tests.support.registry import RegistryProcess

LEVELS = [("Fake", "Level1")]
SERVICE = "contestkit-registry"


# -- the grant rules, as functions ----------------------------------------------------------------


def _access(account: Account | None, *scopes: str) -> list[tuple[str, str, list[str]]]:
    return [(a["type"], a["name"], a["actions"]) for a in grant(account, parse_scopes(list(scopes)))]


def test_a_team_gets_pull_and_push_under_its_own_namespace_only():
    alpha = Account("alpha", Role.TEAM, "alpha")
    assert _access(alpha, "repository:alpha/agent:pull,push") == [("repository", "alpha/agent", ["pull", "push"])]
    assert _access(alpha, "repository:alpha/deep/agent:push") == [("repository", "alpha/deep/agent", ["push"])]
    # Delete and wildcards are not a team's, even on its own repositories.
    assert _access(alpha, "repository:alpha/agent:delete,*,pull") == [("repository", "alpha/agent", ["pull"])]
    # Another namespace, one that merely starts with the same letters, or the bare namespace: nothing.
    assert _access(alpha, "repository:beta/agent:pull,push") == []
    assert _access(alpha, "repository:alpha-evil/agent:pull", "repository:alphabet/agent:pull") == []
    assert _access(alpha, "repository:alpha:pull,push") == []
    # The catalog would list every team's repositories.
    assert _access(alpha, "registry:catalog:*") == []
    # Several scopes in one parameter, and one request mixing allowed and refused scopes.
    assert _access(alpha, "repository:beta/agent:pull repository:alpha/agent:pull") == [
        ("repository", "alpha/agent", ["pull"])
    ]


def test_the_evaluator_pulls_anything_and_the_admin_does_everything():
    evaluator = Account(EVALUATOR_USERNAME, Role.EVALUATOR)
    assert _access(evaluator, "repository:beta/agent:pull,push,delete") == [("repository", "beta/agent", ["pull"])]
    assert _access(evaluator, "registry:catalog:*") == []
    root = Account(ADMIN_USERNAME, Role.ADMIN)
    assert _access(root, "registry:catalog:*", "repository:beta/agent:pull,delete") == [
        ("registry", "catalog", ["*"]),
        ("repository", "beta/agent", ["pull", "delete"]),
    ]
    assert _access(None, "repository:beta/agent:pull") == []


def test_scopes_are_parsed_like_the_registry_writes_them():
    (scope,) = parse_scopes(["repository(plugin):alpha/tool:pull"])
    assert (scope.type, scope.resource_class, scope.name, scope.actions) == (
        "repository",
        "plugin",
        "alpha/tool",
        ("pull",),
    )
    (scope,) = parse_scopes(["repository:alpha/my:agent:pull,pull,push"])  # the name holds a colon
    assert (scope.name, scope.actions) == ("alpha/my:agent", ("pull", "push"))
    assert parse_scopes(["nonsense", "repository::pull", ""]) == []
    access = grant(Account("alpha", Role.TEAM, "alpha"), parse_scopes(["repository(plugin):alpha/tool:pull"]))
    assert access == [{"type": "repository", "name": "alpha/tool", "actions": ["pull"], "class": "plugin"}]


def test_registry_passwords_are_derived_and_rotate_with_the_generation():
    key = bytes(range(32))
    first = registry_auth.team_password(key, 7, 0)
    assert first == registry_auth.team_password(key, 7, 0) and first.startswith("ckr_") and len(first) >= 40
    assert len({first, registry_auth.team_password(key, 7, 1), registry_auth.team_password(key, 8, 0)}) == 3
    assert registry_auth.team_password(bytes(32), 7, 0) != first


# -- a contest with its registry, shared by this module's tests ------------------------------------


@dataclass
class Stack:
    contest: Contest
    address: str
    config: Any

    @property
    def v2(self) -> str:
        return f"http://{self.address}/v2"

    def token(self, username: str, password: str, *scopes: str, service: str | None = SERVICE) -> requests.Response:
        """Ask the realm, as dockerd does: GET with basic auth, service and scopes."""
        params: dict[str, Any] = {"scope": list(scopes)}
        if service is not None:
            params["service"] = service
        return requests.get(
            self.contest.url + "/rest/registry/token", params=params, auth=(username, password), timeout=30
        )

    def bearer(self, username: str, password: str, *scopes: str) -> dict[str, str]:
        answer = self.token(username, password, *scopes)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    def issuer(self, **changes: Any) -> Issuer:
        """The server's own issuer, from the data directory (tests mint bad tokens with it)."""
        values: dict[str, Any] = {
            "signing_key": SigningKey.load(self.config.token_key_path, self.config.token_cert_path),
            "issuer": self.config.registry_issuer,
            "service": self.config.registry_service,
            "ttl_seconds": 300,
        }
        values.update(changes)
        return Issuer(**values)

    def evaluator(self) -> tuple[str, str]:
        return EVALUATOR_USERNAME, self.config.evaluator_registry_password

    def admin(self) -> tuple[str, str]:
        return ADMIN_USERNAME, self.config.registry_admin_password


@dataclass
class TeamLogin:
    name: str
    email: str
    http: requests.Session
    username: str
    password: str

    @property
    def credentials(self) -> tuple[str, str]:
        return self.username, self.password


def _new_team(stack: Stack, prefix: str) -> TeamLogin:
    """A team added while everything runs, logged in, with the registry account /rest/user gives it."""
    name, email = unique_team(prefix)
    stack.contest.add_team(name, email)
    http = stack.contest.session(email)
    cr = http.get(stack.contest.url + "/rest/user").json()["cr"]
    assert cr["url"] == f"{stack.address}/{name}" and cr["username"] == name
    return TeamLogin(name, email, http, cr["username"], cr["password"])


def _start_stack(tmp: Path) -> tuple[Stack, RegistryProcess]:
    address, port = f"127.0.0.1:{find_free_port()}", find_free_port()
    data_dir = init_contest(tmp, LEVELS, registry=address, pull=True, server_url=f"http://127.0.0.1:{port}")
    registry = RegistryProcess(data_dir / "registry" / "config.yml", address).start()
    server = ServerProcess(data_dir, port=port).start()
    return Stack(Contest(data_dir, server, LEVELS), address, load_config(data_dir)), registry


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    started, registry = _start_stack(tmp_path_factory.mktemp("tokens"))
    yield started
    started.contest.server.kill()
    registry.stop()


def _upload(stack: Stack, repository: str, headers: dict[str, str]) -> int:
    """The registry's status for starting a blob upload (the first request of every push)."""
    return requests.post(f"{stack.v2}/{repository}/blobs/uploads/", headers=headers, timeout=30).status_code


def _tags(stack: Stack, repository: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{stack.v2}/{repository}/tags/list", headers=headers, timeout=30)


# -- the realm's answers --------------------------------------------------------------------------


def test_docker_login_without_scope_gets_an_empty_grant_and_wrong_credentials_a_401(stack: Stack):
    alpha = _new_team(stack, "realm")
    answer = stack.token(*alpha.credentials)  # what `docker login` sends: no scope
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert "refresh_token" not in document  # else Docker switches to the OAuth POST flow
    assert document["token"] == document["access_token"] and 30 <= document["expires_in"] <= 3600
    assert _claims(document["token"])["access"] == []
    assert _claims(document["token"])["aud"] == SERVICE  # one string, as distribution 2.8 decodes it
    # The empty-access token is still a token the registry accepts (the engine's login check is /v2/).
    assert requests.get(stack.v2 + "/", headers={"Authorization": f"Bearer {document['token']}"}).status_code == 200

    for username, password in [(alpha.username, "wrong"), ("nobody", alpha.password), (EVALUATOR_USERNAME, "x")]:
        refused = stack.token(username, password, f"repository:{alpha.name}/x:pull")
        assert refused.status_code == 401, (username, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert requests.get(stack.contest.url + "/rest/registry/token", timeout=30).status_code == 401
    other = stack.token(*alpha.credentials, service="someone-elses-registry")
    assert other.status_code == 400 and SERVICE in other.json()["detail"]


def test_the_catalog_is_not_listed_for_teams(stack: Stack):
    alpha = _new_team(stack, "cat")
    answer = stack.token(*alpha.credentials, "registry:catalog:*")
    assert answer.status_code == 200 and _claims(answer.json()["token"])["access"] == []
    catalog = requests.get(f"{stack.v2}/_catalog", headers={"Authorization": f"Bearer {answer.json()['token']}"})
    assert catalog.status_code == 401, catalog.text  # the registry's answer
    assert requests.get(f"{stack.v2}/_catalog", headers=stack.bearer(*stack.admin(), "registry:catalog:*")).ok
    # The team lists its own repositories through the server instead.
    listing = alpha.http.get(stack.contest.url + "/rest/registry/repositories").json()
    assert listing == {"registry": f"{stack.address}/{alpha.name}", "repositories": {}}


# -- what the registry lets a team do, at the HTTP level ------------------------------------------


def test_a_team_may_start_pushes_only_into_its_own_namespace(stack: Stack):
    alpha, beta = _new_team(stack, "alpha"), _new_team(stack, "beta")
    own = f"{alpha.name}/agent"
    theirs = f"{beta.name}/agent"
    assert _upload(stack, own, stack.bearer(*alpha.credentials, f"repository:{own}:pull,push")) == 202
    assert _upload(stack, theirs, stack.bearer(*alpha.credentials, f"repository:{theirs}:pull,push")) == 401
    assert _upload(stack, theirs, stack.bearer(*beta.credentials, f"repository:{theirs}:pull,push")) == 202
    # The evaluator pulls but never pushes.
    assert _upload(stack, theirs, stack.bearer(*stack.evaluator(), f"repository:{theirs}:pull,push")) == 401


def test_unauthenticated_requests_are_refused_by_the_registry(stack: Stack):
    beta = _new_team(stack, "anon")
    repository = f"{beta.name}/agent"
    for response in (
        requests.get(stack.v2 + "/", timeout=30),
        _tags(stack, repository, {}),
        requests.post(f"{stack.v2}/{repository}/blobs/uploads/", timeout=30),
        requests.get(f"{stack.v2}/_catalog", timeout=30),
        _tags(stack, repository, {"Authorization": "Basic " + base64.b64encode(b"x:y").decode()}),
    ):
        assert response.status_code == 401, response.request.url
        assert response.headers["WWW-Authenticate"].startswith(
            f'Bearer realm="{stack.contest.url}/rest/registry/token"'
        )


def test_expired_tampered_foreign_or_misaddressed_tokens_are_refused(stack: Stack, tmp_path: Path):
    alpha = _new_team(stack, "forge")
    repository = f"{alpha.name}/agent"
    access = [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]
    issuer = stack.issuer()

    def status(token: str) -> int:
        return _upload(stack, repository, {"Authorization": f"Bearer {token}"})

    good, _, _ = issuer.token(alpha.username, access)
    assert status(good) == 202  # the control: a token made this way is accepted

    # Expired: past the registry's 60 s leeway.
    expired, _, _ = issuer.token(alpha.username, access, now=dt.datetime.now().timestamp() - 600, ttl_seconds=120)
    assert status(expired) == 401

    # Tampered: another team's repository written into a valid token's claims, signature kept.
    beta = _new_team(stack, "victim")
    header, claims, signature = good.split(".")
    forged_claims = json.loads(_b64decode(claims))
    forged_claims["access"][0]["name"] = f"{beta.name}/agent"
    forged = ".".join([header, _b64encode(json.dumps(forged_claims).encode()), signature])
    assert _upload(stack, f"{beta.name}/agent", {"Authorization": f"Bearer {forged}"}) == 401
    assert status(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")) == 401

    # Signed by another key, with its own certificate in x5c (not under the registry's rootcertbundle).
    key_path, cert_path = tmp_path / "other.key", tmp_path / "other.crt"
    registry_auth.write_signing_key(key_path, cert_path, common_name="contestkit registry tokens")
    foreign, _, _ = stack.issuer(signing_key=SigningKey.load(key_path, cert_path)).token(alpha.username, access)
    assert status(foreign) == 401
    # ... or by another key while naming the right certificate.
    mixed = SigningKey(SigningKey.load(key_path, cert_path).private_key, issuer.signing_key.certificate_der_b64)
    assert status(stack.issuer(signing_key=mixed).token(alpha.username, access)[0]) == 401

    # Issued for another service, or by another issuer.
    assert status(issuer.token(alpha.username, access, audience="another-registry")[0]) == 401
    assert status(stack.issuer(issuer="someone-else").token(alpha.username, access)[0]) == 401


def test_a_team_whose_password_changed_gets_no_new_tokens(stack: Stack):
    alpha = _new_team(stack, "reset")
    repository = f"{alpha.name}/agent"
    scope = f"repository:{repository}:pull,push"
    before = stack.bearer(*alpha.credentials, scope)
    # The organisers reset the team's password (a leak): the registry password rotates with it.
    minted = alpha.http.post(stack.contest.url + "/rest/token", json={"name": "ci"}).json()["token"]
    teams.set_password(stack.contest.data_dir, email=alpha.email, password="a brand new password")
    assert stack.token(*alpha.credentials, scope).status_code == 401
    # The session and the API token minted with the old password end with it.
    assert alpha.http.get(stack.contest.url + "/rest/user").status_code == 401
    api = {"Authorization": f"Bearer {minted}"}
    assert requests.get(stack.contest.url + "/rest/user", headers=api, timeout=30).status_code == 401
    # A token issued before lives out its few minutes (the registry cannot recall it) ...
    assert _upload(stack, repository, before) == 202
    # ... and the team, logged in again, gets its new registry password from /rest/user.
    http = stack.contest.session(alpha.email, "a brand new password")
    cr = http.get(stack.contest.url + "/rest/user").json()["cr"]
    assert cr["password"] != alpha.password
    assert _upload(stack, repository, stack.bearer(cr["username"], cr["password"], scope)) == 202
    # A rotation alone does the same.
    teams.rotate_registry_password(stack.contest.data_dir, email=alpha.email)
    assert stack.token(cr["username"], cr["password"], scope).status_code == 401
    with pytest.raises(ContestkitError, match="No team has the email"):
        teams.rotate_registry_password(stack.contest.data_dir, email="nobody@example.org")


def test_a_disabled_removed_or_purged_team_gets_no_registry_token(stack: Stack):
    """The probe: after the host disabled and then removed team gamma, the realm still granted
    ``gamma/x: pull,push`` and the registry accepted an upload (202)."""
    repository_of, api_token = {}, {}
    cases = {what: _new_team(stack, what) for what in ("disabled", "removed", "purged")}
    for what, team in cases.items():
        minted = team.http.post(stack.contest.url + "/rest/token", json={"name": "ci"})
        assert minted.status_code == 201, minted.text
        api_token[what] = {"Authorization": f"Bearer {minted.json()['token']}"}
        repository_of[what] = f"{team.name}/x"
        scope = f"repository:{repository_of[what]}:pull,push"
        assert _upload(stack, repository_of[what], stack.bearer(*team.credentials, scope)) == 202  # the control

    def host(*args: str) -> None:
        result = run_cli("server", "teams", *args, "--data-dir", str(stack.contest.data_dir))
        assert result.returncode == 0, result.stdout + result.stderr

    host("disable", cases["disabled"].email)
    host("remove", "--yes", cases["removed"].email)
    host("remove", "--yes", "--purge", cases["purged"].email)
    for what, team in cases.items():
        scope = f"repository:{repository_of[what]}:pull,push"
        assert stack.token(*team.credentials, scope).status_code == 401, what
        # Its session and API tokens ended too.
        assert team.http.get(stack.contest.url + "/rest/user").status_code == 401, what
        assert requests.get(stack.contest.url + "/rest/user", headers=api_token[what], timeout=30).status_code == 401

    # Enabled again, the disabled team gets tokens again and the registry takes its upload.
    host("enable", cases["disabled"].email)
    scope = f"repository:{repository_of['disabled']}:pull,push"
    assert _upload(stack, repository_of["disabled"], stack.bearer(*cases["disabled"].credentials, scope)) == 202


# -- the real Docker engine ------------------------------------------------------------------------


class Images:
    """Images this test made, removed at the end (never anyone else's)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.references: list[str] = []

    def add(self, *references: str) -> None:
        self.references.extend(references)

    def remove(self) -> None:
        for reference in self.references:
            try:
                self.engine.images.remove(reference, force=True)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


@pytest.fixture
def images(docker_client: Any) -> Iterator[Images]:
    made = Images(docker_client)
    yield made
    made.remove()


def _push(engine: Any, reference: str, credentials: tuple[str, str]) -> str | None:
    """Push through the engine; the registry's error as the engine reports it, or None."""
    repository, tag = reference.rsplit(":", 1)
    auth = {"username": credentials[0], "password": credentials[1]}
    for event in engine.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
        if "error" in event:
            return str(event["error"])
    return None


def _pull(engine: Any, reference: str, credentials: tuple[str, str] | None) -> str | None:
    from docker.errors import APIError

    repository, tag = reference.rsplit(":", 1)
    auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
    try:
        engine.api.pull(repository, tag=tag, auth_config=auth)
    except APIError as exc:
        return str(exc.explanation or exc)
    return None


@pytest.mark.docker
def test_teams_push_and_pull_their_own_images_and_cannot_touch_each_others(stack: Stack, images: Images, tmp_path):
    engine = images.engine
    alpha, beta = _new_team(stack, "dalpha"), _new_team(stack, "dbeta")
    mine = f"{stack.address}/{alpha.name}/agent:v1"
    theirs = f"{stack.address}/{beta.name}/agent:v1"
    images.add(mine, theirs, f"{stack.address}/{beta.name}/planted:v1")
    tiny_image(engine, tmp_path, mine)
    tiny_image(engine, tmp_path, theirs)

    # Each team pushes its own image.
    assert _push(engine, mine, alpha.credentials) is None
    assert _push(engine, theirs, beta.credentials) is None
    # Team A cannot pull team B's image: the engine reports the registry's refusal.
    engine.images.remove(theirs, force=True)
    refused = _pull(engine, theirs, alpha.credentials)
    assert refused is not None and ("denied" in refused or "unauthorized" in refused), refused
    # Nor push into B's namespace, a new repository or over B's own.
    planted = f"{stack.address}/{beta.name}/planted:v1"
    engine.api.tag(mine, planted.rsplit(":", 1)[0], "v1")
    for target in (planted,):
        error = _push(engine, target, alpha.credentials)
        assert error is not None and ("denied" in error or "unauthorized" in error), error
    engine.api.tag(mine, theirs.rsplit(":", 1)[0], "v1")
    error = _push(engine, theirs, alpha.credentials)
    assert error is not None and ("denied" in error or "unauthorized" in error), error
    # B's image is untouched: B pulls it back, and it is B's (not A's) content.
    engine.images.remove(theirs, force=True)
    assert _pull(engine, theirs, beta.credentials) is None
    tags = _tags(stack, f"{beta.name}/agent", stack.bearer(*beta.credentials, f"repository:{beta.name}/agent:pull"))
    assert tags.json()["tags"] == ["v1"]
    assert (
        _tags(
            stack, f"{beta.name}/planted", stack.bearer(*stack.admin(), f"repository:{beta.name}/planted:pull")
        ).status_code
        == 404
    )
    # Team A pulls its own image back.
    engine.images.remove(mine, force=True)
    assert _pull(engine, mine, alpha.credentials) is None
    # Listing through the server shows each team its own repositories only.
    listing = alpha.http.get(stack.contest.url + "/rest/registry/repositories").json()["repositories"]
    assert listing == {f"{alpha.name}/agent": ["v1"]}


@pytest.mark.docker
def test_a_team_cannot_delete_another_teams_repository(stack: Stack, images: Images, tmp_path):
    engine = images.engine
    alpha, beta = _new_team(stack, "delalpha"), _new_team(stack, "delbeta")
    theirs = f"{stack.address}/{beta.name}/agent:v1"
    images.add(theirs)
    tiny_image(engine, tmp_path, theirs)
    assert _push(engine, theirs, beta.credentials) is None
    repository = f"{beta.name}/agent"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    head = requests.head(
        f"{stack.v2}/{repository}/manifests/v1",
        headers={**accept, **stack.bearer(*beta.credentials, f"repository:{repository}:pull")},
    )
    digest = head.headers["Docker-Content-Digest"]
    url = f"{stack.v2}/{repository}/manifests/{digest}"
    for who in (alpha.credentials, beta.credentials, stack.evaluator()):
        scope = f"repository:{repository}:delete,*,pull,push"
        assert requests.delete(url, headers=stack.bearer(*who, scope)).status_code == 401, who[0]
    # Still there; the admin account can delete it (so the refusals above were the grants', not the registry's).
    assert _tags(stack, repository, stack.bearer(*beta.credentials, f"repository:{repository}:pull")).json()[
        "tags"
    ] == ["v1"]
    assert (
        requests.delete(url, headers=stack.bearer(*stack.admin(), f"repository:{repository}:delete")).status_code == 202
    )


@pytest.mark.docker
def test_the_evaluator_pulls_any_teams_image_with_its_own_account(stack: Stack, images: Images, tmp_path):
    from contestkit.server.executors.pull import RegistryAccount, pull_image

    engine = images.engine
    teams = [_new_team(stack, "evala"), _new_team(stack, "evalb")]
    for team in teams:
        reference = f"{stack.address}/{team.name}/agent:v1"
        images.add(reference)
        tiny_image(engine, tmp_path, reference)
        assert _push(engine, reference, team.credentials) is None
        engine.images.remove(reference, force=True)
        pulled = pull_image(reference, RegistryAccount(*stack.evaluator()))
        assert pulled.startswith(f"{stack.address}/{team.name}/agent@sha256:"), pulled
        images.add(pulled)
    # Without credentials the same pull is refused by the registry.
    engine.images.remove(f"{stack.address}/{teams[0].name}/agent:v1", force=True)
    assert _pull(engine, f"{stack.address}/{teams[0].name}/agent:v1", None) is not None


@pytest.mark.docker
def test_the_2018_flow_rest_user_then_docker_login_and_push(stack: Stack, images: Images, tmp_path):
    """As the 2018 client did it: POST /rest/login, GET /rest/user, then the docker CLI's own login."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("DOCKER TESTS NOT RUN: no docker CLI on PATH")
    engine = images.engine
    name, email = unique_team("y2018")
    stack.contest.add_team(name, email, via_cli=True)
    http = requests.Session()
    assert http.post(stack.contest.url + "/rest/login", json={"email": email, "password": PASSWORD}).ok
    cr = http.get(stack.contest.url + "/rest/user").json()["cr"]
    env = subprocess_env(DOCKER_CONFIG=str(tmp_path / "docker"))
    host = cr["url"].split("/", 1)[0]

    def docker_cli(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([docker, *args], input=password, env=env, capture_output=True, text=True, timeout=120)

    login = docker_cli("login", "--username", cr["username"], "--password-stdin", host, password=cr["password"])
    assert login.returncode == 0 and "Login Succeeded" in login.stdout, login.stderr
    reference = f"{cr['url']}/agent:v1"
    images.add(reference)
    tiny_image(engine, tmp_path, reference)
    pushed = docker_cli("push", reference)
    assert pushed.returncode == 0, pushed.stderr
    assert "digest: sha256:" in pushed.stdout
    wrong = docker_cli("login", "--username", cr["username"], "--password-stdin", host, password="not it")
    assert wrong.returncode != 0, wrong.stdout
    assert "401" in wrong.stderr or "unauthorized" in wrong.stderr.lower(), wrong.stderr


@pytest.mark.docker
def test_contestkit_registry_login_push_and_list_work_unchanged(stack: Stack, images: Images, tmp_path):
    engine = images.engine
    name, email = unique_team("ckcli")
    stack.contest.add_team(name, email)
    env = subprocess_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), DOCKER_CONFIG=str(tmp_path / "docker"))

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=env, input=input)

    assert (
        run("login", "--server", stack.contest.url, "--email", email, "--password-stdin", input=PASSWORD).returncode
        == 0
    )
    logged = run("registry", "login")
    assert logged.returncode == 0 and "Login Succeeded" in logged.stdout, logged.stderr
    local = f"ckcli-{name}:v1"
    images.add(local, f"{stack.address}/{name}/ckcli-{name}:v1")
    tiny_image(engine, tmp_path, local)
    pushed = run("push", local)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    listed = json.loads(run("registry", "list", "--json").stdout)
    assert listed == {"registry": f"{stack.address}/{name}", "repositories": {f"{name}/ckcli-{name}": ["v1"]}}


# -- data directories made for htpasswd are upgraded at the server's start --------------------------


def _make_htpasswd_era_data_dir(tmp: Path, address: str, server_url: str) -> Path:
    """A data directory as contestkit wrote it before token auth: htpasswd registry config and file,
    no keys, no server_url, and a database at schema 1 with the registry password in clear."""
    import bcrypt
    from sqlalchemy import text

    from contestkit.server.storage.db import Database
    from contestkit.server.storage.migrations import MIGRATIONS, schema_migrations

    data_dir = init_contest(tmp, LEVELS, registry=address, pull=True)
    registry_dir = data_dir / "registry"
    for name in ("token.key", "token.crt", "credentials.key"):
        (registry_dir / name).unlink()
    config = yaml.safe_load((data_dir / "server.yaml").read_text())
    for key in ("server_url", "registry_token_ttl", "registry_service", "registry_issuer", "registry_admin_password",
                "tls_cert", "tls_key"):  # fmt: skip
        config.pop(key, None)
    (data_dir / "server.yaml").write_text(yaml.safe_dump(config))
    old_password = "old-registry-password-in-clear"
    evaluator_password = config["evaluator_registry_password"]
    entries = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}"
        for user, password in ((EVALUATOR_USERNAME, evaluator_password), ("oldteam", old_password))
    ]
    (registry_dir / "htpasswd").write_text("\n".join(entries) + "\n")
    registry_config = yaml.safe_load((registry_dir / "config.yml").read_text())
    registry_config["auth"] = {"htpasswd": {"realm": "contestkit", "path": str(registry_dir / "htpasswd")}}
    (registry_dir / "config.yml").write_text(yaml.safe_dump(registry_config))
    (data_dir / "contest.db").unlink()
    database = Database(load_config(data_dir).database())
    with database.engine.begin() as conn:
        schema_migrations.metadata.create_all(conn)
        MIGRATIONS[0][2](conn)
        conn.execute(schema_migrations.insert().values(version=1, name="initial schema", applied_at=0))
        conn.execute(
            text(
                "INSERT INTO teams (name, email, password_hash, namespace, registry_username, registry_password, "
                "created_at) VALUES ('oldteam', 'old@example.org', :hash, 'oldteam', 'oldteam', :pw, 0)"
            ),
            {"hash": auth.hash_password(PASSWORD), "pw": old_password},
        )
    database.dispose()
    # The old registry accepts the old password (the starting point is real).
    old_registry = RegistryProcess(registry_dir / "config.yml", address).start()
    try:
        assert requests.get(f"http://{address}/v2/", auth=("oldteam", old_password)).status_code == 200
    finally:
        old_registry.stop()
    yaml_config = yaml.safe_load((data_dir / "server.yaml").read_text())
    yaml_config["server_url"] = server_url
    (data_dir / "server.yaml").write_text(yaml.safe_dump(yaml_config))
    return data_dir


def test_an_htpasswd_data_directory_is_upgraded_when_its_server_starts(tmp_path: Path):
    address, port = f"127.0.0.1:{find_free_port()}", find_free_port()
    data_dir = _make_htpasswd_era_data_dir(tmp_path, address, f"http://127.0.0.1:{port}")
    server = ServerProcess(data_dir, port=port).start()
    registry = None
    try:
        assert "now uses token auth" in server.log() and "restart docker-registry" in server.log()
        registry_dir = data_dir / "registry"
        assert not (registry_dir / "htpasswd").exists()
        for secret in ("token.key", "credentials.key"):
            assert (registry_dir / secret).stat().st_mode & 0o077 == 0
        auth = yaml.safe_load((registry_dir / "config.yml").read_text())["auth"]
        assert auth == {
            "token": {
                "realm": f"http://127.0.0.1:{port}/rest/registry/token",
                "service": SERVICE,
                "issuer": "contestkit",
                "rootcertbundle": str(registry_dir / "token.crt"),
            }
        }
        with sqlite3.connect(data_dir / "contest.db") as db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(teams)")]
            assert db.execute("SELECT name, registry_generation FROM teams").fetchall() == [("oldteam", 0)]
        assert "registry_password" not in columns
        assert b"old-registry-password-in-clear" not in b"".join(p.read_bytes() for p in data_dir.glob("contest.db*"))
        assert load_config(data_dir).registry_admin_password

        # The organiser restarts the registry as told; the old password is gone, the new one works.
        registry = RegistryProcess(registry_dir / "config.yml", address).start()
        stack = Stack(Contest(data_dir, server, LEVELS), address, load_config(data_dir))
        assert stack.token("oldteam", "old-registry-password-in-clear").status_code == 401
        http = stack.contest.session("old@example.org")
        cr = http.get(stack.contest.url + "/rest/user").json()["cr"]
        scope = "repository:oldteam/agent:pull,push"
        assert _upload(stack, "oldteam/agent", stack.bearer(cr["username"], cr["password"], scope)) == 202
        assert (
            _upload(stack, "other/agent", stack.bearer(cr["username"], cr["password"], "repository:other/agent:push"))
            == 401
        )
        # A second start changes nothing more.
        server.kill()
        seen = len(server.log())
        again = ServerProcess(data_dir, port=port).start()  # the same log file: read what it added
        assert "token auth" not in again.log()[seen:] and "htpasswd" not in again.log()[seen:]
        again.kill()
    finally:
        server.kill()
        if registry is not None:
            registry.stop()


def test_the_registry_password_migration_on_postgresql(tmp_path: Path, postgres_url: str):
    """Migration 2 on PostgreSQL: the clear-text column goes, the teams stay (SQLite: the test above)."""
    from sqlalchemy import inspect, text

    from contestkit.server.storage.db import Database
    from contestkit.server.storage.migrations import MIGRATIONS, migrate, schema_migrations

    database = Database(postgres_url)
    try:
        with database.engine.begin() as conn:
            schema_migrations.metadata.create_all(conn)
            MIGRATIONS[0][2](conn)
            conn.execute(schema_migrations.insert().values(version=1, name="initial schema", applied_at=0))
            conn.execute(
                text(
                    "INSERT INTO teams (name, email, password_hash, namespace, registry_username, registry_password, "
                    "created_at) VALUES ('t', 't@example.org', 'h', 't', 't', 'secret-in-clear', 0)"
                )
            )
        assert 2 in migrate(database)
        columns = {c["name"] for c in inspect(database.engine).get_columns("teams")}
        assert "registry_password" not in columns and "registry_generation" in columns
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT name, registry_generation FROM teams")).all() == [("t", 0)]
    finally:
        database.dispose()


# -- TLS for teams on other machines ----------------------------------------------------------------


def _contest_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A self-signed contest CA and a server certificate for 127.0.0.1 signed by it (cert, key, ca)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test contest CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = tmp / "server.crt", tmp / "server.key", tmp / "ca.crt"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def test_with_a_certificate_the_realm_and_the_registry_speak_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cert, key, ca = _contest_ca(tmp_path)
    address, port = f"127.0.0.1:{find_free_port()}", find_free_port()
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nFake,Level1\n")
    data_dir = tmp_path / "contest"
    created = run_cli(
        "server", "init", "--data-dir", str(data_dir), "--registry", address, "--levels", str(levels),
        "--evaluator", "tests.server.fake_level_runner:fake_level_runner", "--no-pull",
        "--server-url", f"https://127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    config = load_config(data_dir)
    assert config.registry_scheme == "https" and (data_dir / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    http_config = yaml.safe_load((data_dir / "registry" / "config.yml").read_text())["http"]
    assert http_config["tls"] == {"certificate": str(data_dir / "tls/cert.pem"), "key": str(data_dir / "tls/key.pem")}
    registry = subprocess.Popen(
        ["docker-registry", "serve", str(data_dir / "registry" / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) if shutil.which("docker-registry") else None  # fmt: skip
    if registry is None:
        pytest.skip("REGISTRY TESTS SKIPPED: Debian's docker-registry is not installed")
    # Trust the contest CA as a team's machine would (the server process inherits it for its own calls).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    server = ServerProcess(data_dir, port=port)
    server.url = f"https://127.0.0.1:{port}"
    try:
        _wait_https(f"https://{address}/v2/", ca)
        server.start()
        name, email = unique_team("tls")
        teams.add_team(data_dir, name=name, email=email, password=PASSWORD)
        http = requests.Session()
        http.verify = str(ca)  # the contest CA, as teams install it
        logged_in = http.post(server.url + "/rest/login", json={"email": email, "password": PASSWORD})
        assert logged_in.ok
        # Over TLS the session and device cookies are Secure, without cookie_secure in server.yaml.
        assert "cookie_secure" not in yaml.safe_load((data_dir / "server.yaml").read_text()) or (
            yaml.safe_load((data_dir / "server.yaml").read_text())["cookie_secure"] is None
        )
        assert {c.name: c.secure for c in http.cookies} == {"contestkit_session": True, "contestkit_device": True}
        cr = http.get(server.url + "/rest/user").json()["cr"]
        assert cr["scheme"] == "https"
        challenge = requests.get(f"https://{address}/v2/", verify=str(ca)).headers["WWW-Authenticate"]
        assert challenge.startswith(f'Bearer realm="https://127.0.0.1:{port}/rest/registry/token"')
        token = http.get(
            server.url + "/rest/registry/token",
            params={"service": SERVICE, "scope": f"repository:{name}/agent:pull,push"},
            auth=(cr["username"], cr["password"]),
        ).json()["token"]
        started = requests.post(
            f"https://{address}/v2/{name}/agent/blobs/uploads/", headers={"Authorization": f"Bearer {token}"},
            verify=str(ca),
        )  # fmt: skip
        assert started.status_code == 202
        import certifi

        with pytest.raises(requests.exceptions.SSLError):  # without the contest CA, no trust
            requests.get(f"https://{address}/v2/", timeout=10, verify=certifi.where())
    finally:
        server.kill()
        registry.terminate()
        registry.wait(10)


def _wait_https(url: str, ca: Path, timeout: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, verify=str(ca), timeout=1)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- helpers --------------------------------------------------------------------------------------------


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _claims(token: str) -> dict[str, Any]:
    return json.loads(_b64decode(token.split(".")[1]))
