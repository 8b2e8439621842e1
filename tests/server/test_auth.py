"""Logins, sessions, bearer tokens and password storage of the contest server (real server process)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from contestkit.client.api_client import ContestClient, error_for
from contestkit.errors import ContestkitError

if TYPE_CHECKING:
    from tests.support.contest import Contest

LEVELS = [("Fake", "Level1")]


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    """One server for the tests that need no special configuration; each test has its own teams.

    All of them log in from 127.0.0.1, so the per-address limit is raised here (its own test has its own
    server): the module's deliberate wrong passwords must not add up to throttling unrelated tests."""
    return make_module_contest(LEVELS, extra_config={"login_client_limit": 10_000})


def test_wrong_password_and_unknown_email_are_refused(contest, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email, via_cli=True)
    url = contest.url
    wrong = requests.post(url + "/rest/login", json={"email": email, "password": "not it at all"})
    assert wrong.status_code == 401
    assert "Wrong email or password" in wrong.json()["detail"]
    assert "contestkit_session" not in wrong.cookies
    unknown = requests.post(url + "/rest/login", json={"email": "nobody@example.org", "password": password})
    assert unknown.status_code == 401
    # Same answer for both: the API does not tell which emails exist.
    assert unknown.json() == wrong.json()
    assert requests.get(url + "/rest/user").status_code == 401

    ok = requests.post(url + "/rest/login", json={"email": email.upper() + " ", "password": password})
    assert ok.status_code == 200, ok.text
    assert ok.json()["team"] == name
    cookie = ok.cookies.get("contestkit_session")
    assert cookie
    header = ok.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header
    user = requests.get(url + "/rest/user", cookies={"contestkit_session": cookie}).json()
    assert user["cr"]["url"] == f"127.0.0.1:5000/{name}"
    assert user["cr"]["username"] == name and len(user["cr"]["password"]) >= 24


def test_passwords_are_stored_as_argon2_and_registry_passwords_not_at_all(contest, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    with sqlite3.connect(contest.data_dir / "contest.db") as db:
        (stored,) = db.execute("SELECT password_hash FROM teams WHERE email = ?", (email,)).fetchone()
        columns = [row[1] for row in db.execute("PRAGMA table_info(teams)")]
    assert stored.startswith("$argon2id$") and password not in stored
    assert "registry_password" not in columns and "registry_generation" in columns
    registry_password = contest.session(email).get(contest.url + "/rest/user").json()["cr"]["password"]
    # Not in the database file (nor its write-ahead log), in any form the registry would accept.
    for path in contest.data_dir.glob("contest.db*"):
        assert registry_password.encode() not in path.read_bytes(), path
    for secret in ("credentials.key", "token.key"):
        assert (contest.data_dir / "registry" / secret).stat().st_mode & 0o077 == 0
    assert not (contest.data_dir / "registry" / "htpasswd").exists()
    assert (contest.data_dir / "server.yaml").stat().st_mode & 0o077 == 0


def test_logout_ends_the_session_on_the_server(contest):
    _, http = contest.team("alpha")
    stolen = dict(http.cookies)
    assert http.get(contest.url + "/rest/user").status_code == 200
    assert http.post(contest.url + "/rest/logout").status_code == 200
    # A copy of the cookie taken before the logout is worthless afterwards.
    again = requests.get(contest.url + "/rest/user", cookies=stolen)
    assert again.status_code == 401
    assert "contestkit login" in again.json()["detail"]


def test_sessions_expire(tmp_path, init_contest, password):
    """The app in this process with a clock the test advances past ``session_ttl_hours`` (no sleep)."""
    from contestkit.server.app import create_app
    from contestkit.server.contest.teams import add_team
    from tests.support.asgi import asgi_request
    from tests.support.clock import ManualClock

    data_dir = init_contest(tmp_path, LEVELS, extra_config={"session_ttl_hours": 1.0})
    add_team(data_dir, name="Alpha", email="alpha@example.org", password=password)
    clock = ManualClock()
    app = create_app(data_dir, start_scheduler=False, clock=clock)
    status, headers, _ = asgi_request(app, "POST", "/rest/login", {"email": "alpha@example.org", "password": password})
    assert status == 200
    cookie = next(c.split(";")[0] for c in headers["set-cookie"].split("\n") if c.startswith("contestkit_session="))
    assert asgi_request(app, "GET", "/rest/user", headers={"cookie": cookie})[0] == 200
    clock.advance(3599.0)  # an hour less a second: still valid
    assert asgi_request(app, "GET", "/rest/user", headers={"cookie": cookie})[0] == 200
    clock.advance(2.0)
    status, _, body = asgi_request(app, "GET", "/rest/user", headers={"cookie": cookie})
    assert status == 401
    assert "expired" in json.loads(body)["detail"]
    app.state.database.dispose()


def test_bearer_tokens_for_scripts(contest, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    url = contest.url
    refused = requests.post(url + "/rest/token", json={"email": email, "password": "wrong password"})
    assert refused.status_code == 401
    minted = requests.post(url + "/rest/token", json={"email": email, "password": password, "name": "ci"})
    assert minted.status_code == 201, minted.text
    token = minted.json()["token"]
    assert token.startswith("ck_")
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(url + "/rest/user", headers=bearer).json()["name"] == name
    started = requests.post(url + "/rest/job/start", json={"tag": "v1"}, headers=bearer)
    assert started.status_code == 201, started.text
    listed = requests.get(url + "/rest/tokens", headers=bearer).json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    assert requests.delete(f"{url}/rest/token/{minted.json()['id']}", headers=bearer).status_code == 200
    assert requests.get(url + "/rest/user", headers=bearer).status_code == 401
    assert requests.get(url + "/rest/user", headers={"Authorization": "Bearer ck_made_up"}).status_code == 401


def test_api_tokens_always_expire_within_the_maximum(contest, unique_team, password):
    """The probe: ``expires_in_days: Infinity`` or ``1e308`` made a token that never expires."""
    from contestkit.server.security.auth import API_TOKEN_DAYS, API_TOKEN_MAX_DAYS

    name, email = unique_team("expiry")
    contest.add_team(name, email)
    url, login = contest.url + "/rest/token", {"email": email, "password": password}
    for days in ("Infinity", "NaN", "1e308", str(API_TOKEN_MAX_DAYS + 1), "0", "-1"):
        body = json.dumps(login)[:-1] + f', "expires_in_days": {days}}}'
        refused = requests.post(url, data=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422, (days, refused.text)
        assert "expires_in_days" in refused.json()["detail"]
    before = time.time()
    default = requests.post(url, json=login).json()
    assert before + API_TOKEN_DAYS * 86400 - 60 <= default["expires"] <= time.time() + API_TOKEN_DAYS * 86400 + 60
    longest = requests.post(url, json={**login, "expires_in_days": API_TOKEN_MAX_DAYS}).json()
    assert longest["expires"] <= time.time() + API_TOKEN_MAX_DAYS * 86400 + 60


def test_repeated_wrong_passwords_are_throttled(contest, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    body = {"email": email, "password": "guess guess"}
    codes = [requests.post(contest.url + "/rest/login", json=body).status_code for _ in range(11)]
    assert codes[:10] == [401] * 10
    assert codes[10] == 429
    # A client the server does not know waits even with the right password: the guesser cannot tell it found it.
    right = requests.post(contest.url + "/rest/login", json={"email": email, "password": password})
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0


def test_someone_elses_guesses_do_not_lock_the_team_out(contest, unique_team, password):
    """Finding of issue 11: after 10 wrong passwords from anyone, the right one got 429 for 5 minutes.
    Now a client that logged in before (its device cookie) logs in again, its open session and the
    team's API tokens keep working; only clients the server does not know for this account wait."""
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    url = contest.url
    laptop = requests.Session()
    assert laptop.post(url + "/rest/login", json={"email": email, "password": password}).status_code == 200
    assert laptop.cookies.get("contestkit_device")
    token = requests.post(url + "/rest/token", json={"email": email, "password": password}).json()["token"]
    guesses = [
        requests.post(url + "/rest/login", json={"email": email, "password": f"guess {i}"}).status_code
        for i in range(12)
    ]
    assert guesses == [401] * 10 + [429] * 2
    assert requests.post(url + "/rest/login", json={"email": email, "password": password}).status_code == 429
    assert laptop.get(url + "/rest/user").status_code == 200  # the open session
    again = laptop.post(url + "/rest/login", json={"email": email, "password": password})
    assert again.status_code == 200, again.text  # a new session for the known device
    assert laptop.get(url + "/rest/user").json()["name"] == name
    assert requests.get(url + "/rest/user", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # The device cookie is bound to its account and signed: for another email, or altered, it is worthless.
    other_name, other_email = unique_team("beta")
    contest.add_team(other_name, other_email)
    for _ in range(10):
        requests.post(url + "/rest/login", json={"email": other_email, "password": "guess guess"})
    borrowed = requests.post(
        url + "/rest/login",
        json={"email": other_email, "password": password},
        cookies={"contestkit_device": laptop.cookies["contestkit_device"]},
    )
    assert borrowed.status_code == 429
    forged = laptop.cookies["contestkit_device"][:-2] + "AA"
    assert (
        requests.post(
            url + "/rest/login", json={"email": email, "password": password}, cookies={"contestkit_device": forged}
        ).status_code
        == 429
    )


def test_contestkit_login_keeps_its_device_cookie_so_a_strangers_guesses_do_not_stop_it(
    contest, tmp_path, cli, base_env, unique_team, password
):
    """The probe: 10 wrong guesses from another client made `contestkit login` fail with 429, because
    the CLI never sent the device cookie it had saved. Now it keeps the cookie (across logout too) and
    sends it; the test drives the CLI itself."""
    name, email = unique_team("device")
    contest.add_team(name, email)
    env = base_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), DOCKER_CONFIG=str(tmp_path / "docker"))
    env.pop("CONTESTKIT_TOKEN", None)
    env.pop("CONTESTKIT_SERVER", None)

    def login() -> Any:
        return cli("login", "--server", contest.url, "--email", email, "--password-stdin", input=password + "\n",
                   env=env)  # fmt: skip

    first = login()
    assert first.returncode == 0, first.stderr
    assert cli("logout", env=env).returncode == 0
    stranger = [
        requests.post(contest.url + "/rest/login", json={"email": email, "password": f"guess {i}"}).status_code
        for i in range(11)
    ]
    assert stranger[-1] == 429  # the account is throttled for clients the server does not know
    again = login()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Logged in" in again.stdout


def test_a_known_device_has_a_limit_of_its_own(contest, unique_team, password):
    """A device cookie is no licence to guess: its own wrong passwords are limited like an account's."""
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    device = requests.Session()
    assert device.post(contest.url + "/rest/login", json={"email": email, "password": password}).status_code == 200
    codes = [
        device.post(contest.url + "/rest/login", json={"email": email, "password": "guess"}).status_code
        for _ in range(11)
    ]
    assert codes == [401] * 10 + [429]


@pytest.mark.parametrize("trusted", [False, True], ids=["default-no-proxy", "loopback-proxy-trusted"])
def test_forwarded_headers_are_believed_only_from_the_configured_proxies(make_contest, trusted):
    """The probe: uvicorn believed X-Forwarded-For from loopback by default, so a local client chose
    the address the login throttle counted it under. By default now no proxy is believed; with
    ``forwarded_allow_ips`` naming the proxy, its header is (the control)."""
    extra: dict[str, Any] = {"login_client_limit": 3}
    if trusted:
        extra["forwarded_allow_ips"] = ["127.0.0.1"]
    contest = make_contest([("Fake", "Level1")], extra_config=extra)
    codes = [
        requests.post(
            contest.url + "/rest/login",
            json={"email": f"nobody{i}@example.org", "password": "guess guess"},
            headers={"X-Forwarded-For": f"203.0.113.{i + 1}"},
        ).status_code
        for i in range(5)
    ]
    assert codes == ([401] * 5 if trusted else [401] * 3 + [429] * 2)


def test_concurrent_guessers_cannot_race_past_the_limit(contest, unique_team):
    """Finding: 20 concurrent guessers got 28-29 guesses checked against a limit of 10. A check now
    takes its slot before the password is hashed, so at most 10 are ever checked (401); the rest 429."""
    from concurrent.futures import ThreadPoolExecutor

    name, email = unique_team("alpha")
    contest.add_team(name, email)

    def guess(i: int) -> int:
        return requests.post(contest.url + "/rest/login", json={"email": email, "password": f"guess {i}"}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(60)))
    assert codes.count(401) == 10, codes
    assert codes.count(429) == 50, codes


def test_one_client_is_limited_across_accounts(make_contest, password):
    """Finding: 60 guesses spread over 60 emails were all checked. Now one address gets
    ``login_client_limit`` failed checks per window, whichever emails it tries; a team's known
    device (logged in before) still gets in from that address."""
    contest = make_contest(LEVELS, extra_config={"login_client_limit": 15})
    contest.add_team("Alpha", "alpha@example.org")
    device = contest.session("alpha@example.org")
    codes = [
        requests.post(contest.url + "/rest/login", json={"email": f"user{i}@example.org", "password": "guess"})
        for i in range(20)
    ]
    assert [c.status_code for c in codes] == [401] * 15 + [429] * 5
    assert "from this address" in codes[-1].json()["detail"]
    assert (
        requests.post(
            contest.url + "/rest/login", json={"email": "alpha@example.org", "password": password}
        ).status_code
        == 429
    )
    assert (
        device.post(contest.url + "/rest/login", json={"email": "alpha@example.org", "password": password}).status_code
        == 200
    )


def test_a_password_that_is_not_valid_text_is_a_failed_login_and_is_throttled(contest, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    wrong = requests.post(contest.url + "/rest/login", json={"email": email, "password": "not it at all"}).json()
    body = {"email": email, "password": "\ud800"}  # a lone surrogate: valid JSON, not valid Unicode
    for _ in range(4):
        refused = requests.post(contest.url + "/rest/login", json=body)
        assert refused.status_code == 401 and refused.json() == wrong
    minted = requests.post(contest.url + "/rest/token", json=body)
    assert minted.status_code == 401 and minted.json() == wrong
    odd_email = requests.post(contest.url + "/rest/login", json={"email": "\ud800@x.org", "password": password})
    assert odd_email.status_code == 401 and odd_email.json() == wrong
    # They count as failed logins: 6 for this email above (1 + 4 + the token), 4 more and it is throttled.
    codes = [requests.post(contest.url + "/rest/login", json=body).status_code for _ in range(5)]
    assert codes == [401] * 4 + [429]
    http = requests.Session()
    assert http.post(contest.url + "/rest/login", json={"email": email, "password": password}).status_code == 429


def test_a_token_name_that_is_not_valid_text_is_refused(contest):
    _, http = contest.team("alpha")
    refused = http.post(contest.url + "/rest/token", json={"name": "ci \ud800"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("Invalid request (name:")


@pytest.mark.parametrize("token_id", ["0", str(2**31), "99999999999999999999999"])
def test_token_ids_no_token_can_have_are_not_found(contest, token_id):
    _, http = contest.team("alpha")
    answer = http.delete(f"{contest.url}/rest/token/{token_id}")
    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == f"Your team has no API token {token_id}."


def test_set_password_ends_sessions_and_revokes_api_tokens(contest, cli, unique_team, password):
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    url = contest.url
    token = requests.post(url + "/rest/token", json={"email": email, "password": password}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    session = contest.session(email)
    assert requests.get(url + "/rest/user", headers=bearer).status_code == 200
    result = cli(
        "server", "set-password", email, "--password-stdin", "--data-dir", str(contest.data_dir),
        input="a brand new password\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Whoever leaked the old password may have minted tokens with it: they stop working too.
    assert requests.get(url + "/rest/user", headers=bearer).status_code == 401
    assert session.get(url + "/rest/user").status_code == 401
    assert contest.session(email, "a brand new password").get(url + "/rest/user").status_code == 200


def test_the_client_gives_advice_when_the_server_url_is_not_a_contest_server(contest, unique_team, password):
    """FastAPI answers an unknown path with {"detail": "Not Found"}: that is no advice, the client's is."""
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    with pytest.raises(ContestkitError) as err:
        ContestClient(contest.url + "/contest").login(email, password)
    assert str(err.value) == (
        "Logging in failed (HTTP 404 Not Found): it does not exist, or the server URL is not a contest server "
        "(check `contestkit login --server`)."
    )
    # A sentence of the server's own is still shown as it is.
    with pytest.raises(ContestkitError, match=r"HTTP 404\): Your team has no job 7;"):
        client = ContestClient(contest.url)
        client.login(email, password)
        client.job(7)
    not_allowed = requests.Response()
    not_allowed.status_code, not_allowed.reason = 405, "Method Not Allowed"
    not_allowed._content = b'{"detail": "Method Not Allowed"}'
    assert str(error_for(not_allowed, "Logging in")) == (
        "Logging in failed (HTTP 405 Method Not Allowed): the server URL is probably not a contest server; "
        "check `contestkit login --server`."
    )


def test_the_login_throttle_forgets_expired_emails_and_stays_bounded(monkeypatch):
    """A flood of failed logins for made-up emails (each one costs the server an Argon2 check, not
    the attacker) must not grow the throttle's memory without bound, and must not reset the count of
    an email that is being guessed at. Direct unit test of LoginThrottle, on a fake clock."""
    from contestkit.server.security import auth

    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    throttle = auth.LoginThrottle(limit=10, window=300.0, max_entries=1000)
    for _ in range(10):
        throttle.failed("target@example.org")
    assert throttle.retry_after("target@example.org") > 0
    for i in range(5000):
        assert throttle.retry_after(f"random{i}@example.org") == 0.0
        throttle.failed(f"random{i}@example.org")
        assert len(throttle._failures) <= 1000
    # The guessed-at email is still throttled: the flood did not push it out.
    assert throttle.retry_after("target@example.org") > 0
    # Once the window has passed, nothing of the flood is kept.
    clock[0] += 301.0
    assert throttle.retry_after("target@example.org") == 0.0
    throttle.failed("late@example.org")
    assert list(throttle._failures) == ["late@example.org"]
    # Asking about an email (every login does) stores nothing.
    throttle.retry_after("never-failed@example.org")
    assert "never-failed@example.org" not in throttle._failures


def test_the_login_throttle_sweeps_expired_emails_with_the_default_size(monkeypatch):
    """Without any cap being reached, expired emails are still dropped (at least once a window)."""
    from contestkit.server.security import auth

    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    throttle = auth.LoginThrottle()
    for i in range(2000):
        throttle.failed(f"random{i}@example.org")
    clock[0] += throttle.window + 1
    throttle.failed("late@example.org")
    assert len(throttle._failures) == 1


def test_logout_ends_the_stored_session_even_with_a_token_in_the_environment(
    contest, tmp_path, cli, base_env, unique_team, password
):
    """`contestkit logout` with CONTESTKIT_TOKEN set (a CI shell, say) still ends the session that
    `contestkit login` stored, on the server too; the environment's API token is not revoked."""
    name, email = unique_team("alpha")
    contest.add_team(name, email)
    env = base_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), DOCKER_CONFIG=str(tmp_path / "docker"))
    env.pop("CONTESTKIT_TOKEN", None)
    env.pop("CONTESTKIT_SERVER", None)
    logged_in = cli("login", "--server", contest.url, "--email", email, "--password-stdin", input=password + "\n",
                    env=env)  # fmt: skip
    assert logged_in.returncode == 0, logged_in.stderr
    session_file = tmp_path / "xdg" / "contestkit" / "session.json"
    cookie = json.loads(session_file.read_text())["cookies"]
    assert requests.get(contest.url + "/rest/user", cookies=cookie).status_code == 200
    token = requests.post(contest.url + "/rest/token", json={"email": email, "password": password}).json()["token"]

    out = cli("logout", env={**env, "CONTESTKIT_TOKEN": token, "CONTESTKIT_SERVER": contest.url})
    assert out.returncode == 0, out.stderr
    assert not session_file.exists()
    assert requests.get(contest.url + "/rest/user", cookies=cookie).status_code == 401  # ended on the server
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(contest.url + "/rest/user", headers=bearer).status_code == 200
