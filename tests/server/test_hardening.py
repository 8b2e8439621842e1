"""The server against hostile or careless clients (issue 11): sizes, control characters, cross-origin
cookie requests, a read-only data directory, sweeping, and what a commit guarantees (real server
processes; both databases where the finding was database-specific)."""

from __future__ import annotations

import socket
import time

import pytest
import requests

LEVELS = [("Fake", "Level1")]


@pytest.fixture(scope="module")
def contest(make_module_contest):
    return make_module_contest(LEVELS, extra_config={"login_client_limit": 10_000})


def _raw_post(url: str, path: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + f"{host}:{port}".encode() + b"\r\n" + head)
        try:
            for chunk in body_chunks:
                conn.sendall(chunk)
        except OSError:
            pass  # the server answered and closed without reading it all: the point
        return conn.recv(65536)


def test_a_body_over_64_kib_is_refused_unread(contest):
    """Finding: a 100 MB login body was read whole. A Content-Length over 64 KiB is a 413 at once,
    before the body is sent; a chunked body is a 413 once it passes 64 KiB."""
    big = requests.post(contest.url + "/rest/login", data=b"x" * (64 * 1024 + 1),
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and "64 KiB" in big.json()["detail"]
    answer = _raw_post(
        contest.url,
        "/rest/login",
        b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n",
        [],  # nothing of the 100 MB is sent: the answer must come without it (else recv times out)
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    def chunks():
        for _ in range(200):
            yield b"x" * 4096

    streamed = requests.post(contest.url + "/rest/login", data=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    small = requests.post(contest.url + "/rest/login", json={"email": "a@example.org", "password": "p" * 100})
    assert small.status_code == 401
    headers = {f"X-Filler-{i}": "y" * 1000 for i in range(20)}
    assert requests.get(contest.url + "/rest/health", headers=headers).status_code == 431


@pytest.fixture
def db_contest(make_contest, database_url):
    contest = make_contest(LEVELS, database_url=database_url, extra_config={"login_client_limit": 10_000})
    contest.add_team("Alpha", "alpha@example.org")
    return contest


@pytest.mark.perf
def test_an_announced_oversized_body_is_refused_within_seconds(contest):
    started = time.monotonic()
    head = b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    answer = _raw_post(contest.url, "/rest/login", head, [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 10


def test_control_characters_are_a_4xx_on_both_databases(db_contest):
    """Finding: on PostgreSQL a NUL in the login email or the token name was a 500 (psycopg.DataError)."""
    url = db_contest.url
    http = db_contest.session("alpha@example.org")
    for path, body, client in (
        ("/rest/login", {"email": "alpha\u0000@example.org", "password": "whatever it is"}, requests),
        ("/rest/token", {"email": "alpha\u0000@example.org", "password": "whatever it is"}, requests),
        ("/rest/token", {"name": "ci\u0000"}, http),
        ("/rest/token", {"name": "ci\u0007bell"}, http),
        ("/rest/job/start", {"tag": "v1\u0000"}, http),
    ):
        answer = client.post(url + path, json=body)
        assert answer.status_code == 422, (path, body, answer.text)
        assert "control character" in answer.json()["detail"]
    assert http.post(url + "/rest/token", json={"name": "ci"}).status_code == 201


def test_a_cookie_request_from_another_origin_is_refused_and_the_2018_client_still_works(contest):
    """Finding: a page on the same host, another port, cancelled a team's job through its cookie."""
    _, http = contest.team("alpha")
    url = contest.url
    other_port = "http://127.0.0.1:1"  # the same host, another port: another origin
    for headers in ({"Origin": other_port}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                    {"Sec-Fetch-Site": "cross-site", "Origin": url}):  # fmt: skip
        refused = http.post(url + "/rest/job/start", json={"tag": "v1"}, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert "another site or port" in refused.json()["detail"]
    assert http.get(url + "/rest/job/status").status_code == 404  # nothing was started
    # The 2018 client: the cookie and nothing else; a page of the server itself: its own origin.
    started = http.post(url + "/rest/job/start", json={"tag": "v1"})
    assert started.status_code == 201, started.text
    own = {"Origin": url, "Sec-Fetch-Site": "same-origin"}
    assert http.post(url + "/rest/job/kill", headers=own).status_code == 200
    contest.wait_job(http, started.json()["id"], ("cancelled", "finished", "failed"))
    assert http.post(url + "/rest/job/restart").status_code == 200
    assert http.post(url + "/rest/job/kill").status_code == 200
    # A bearer token is no ambient credential: Origin does not matter for it.
    token = http.post(url + "/rest/token", json={"name": "ci"}).json()["token"]
    bearer = requests.get(url + "/rest/tokens", headers={"Authorization": f"Bearer {token}", "Origin": other_port})
    assert bearer.status_code == 200
    # Reading is never refused (a GET changes nothing).
    assert http.get(url + "/rest/user", headers={"Origin": other_port}).status_code == 200


def test_the_server_sqlite_connections_commit_with_synchronous_full(tmp_path):
    """Finding: synchronous=NORMAL lost commits up to 6 s old after a forced filesystem error."""
    from contestkit.server.storage.db import Database

    database = Database(f"sqlite:///{tmp_path / 'contest.db'}")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    database.dispose()


def test_a_read_only_database_is_a_json_503(tmp_path, init_contest, server_process, password):
    """Finding: with a read-only data directory, login and token were plain-text 500s. Here SQLite
    itself refuses every write (the database opened with ``mode=ro``, as a read-only mount makes
    it), while reads still work."""
    import yaml

    from contestkit.server.contest.teams import add_team

    data_dir = init_contest(tmp_path, LEVELS)
    add_team(data_dir, name="alpha", email="alpha@example.org", password=password)
    config = yaml.safe_load((data_dir / "server.yaml").read_text())
    config["database_url"] = f"sqlite:///file:{data_dir / 'contest.db'}?mode=ro&uri=true"
    (data_dir / "server.yaml").write_text(yaml.safe_dump(config))
    server = server_process(data_dir).start()
    try:
        login = requests.post(server.url + "/rest/login", json={"email": "alpha@example.org", "password": password})
        token = requests.post(server.url + "/rest/token", json={"email": "alpha@example.org", "password": password})
        for answer in (login, token):
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/json"
            assert "read-only or full" in answer.json()["detail"]
        assert requests.get(server.url + "/rest/leaderboard").status_code == 200  # reads still work
    finally:
        server.stop()


def test_expired_sessions_and_tokens_are_swept(offline_contest):
    """Finding: sessions were never swept (2,090 rows after the probe). Each database."""
    from sqlalchemy import func, select

    from contestkit.server.security import housekeeping
    from contestkit.server.storage.db import AuthToken, now

    db = offline_contest.database
    stamp = now()
    with db.session() as session:
        for i, (kind, expires) in enumerate(
            [("session", stamp - 10), ("session", stamp + 3600), ("api", stamp - 1), ("api", None)]
        ):
            session.add(AuthToken(team_id=offline_contest.team_id, kind=kind, token_hash=f"h{i}", expires_at=expires))
    assert housekeeping.sweep_expired(db) == 2
    with db.session() as session:
        assert sorted(session.scalars(select(AuthToken.token_hash))) == ["h1", "h3"]
    # The server's own thread does it without being asked, every sweep_seconds.
    sweeper = housekeeping.Sweeper(db, interval=0.2)
    with db.session() as session:
        session.add(AuthToken(team_id=offline_contest.team_id, kind="session", token_hash="h9", expires_at=now() + 0.3))
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with db.session() as session:
                if session.scalar(select(func.count()).select_from(AuthToken)) == 2:
                    break
            time.sleep(0.1)
    finally:
        sweeper.stop()
    with db.session() as session:
        assert sorted(session.scalars(select(AuthToken.token_hash))) == ["h1", "h3"]


def test_a_full_hash_pool_refuses_at_once_with_retry_after():
    """Finding: 100 concurrent logins (Argon2 on the request pool) made /rest/health take 8-15 s. The
    checks now run on a pool of their own; when it is full a login is refused at once (503), not queued."""
    import asyncio
    import os
    import threading

    from contestkit.server.errors import Overloaded
    from contestkit.server.security import auth

    pool = auth.HashPool(workers=1, waiting=1)
    release = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(pool.run(release.wait, 30))
        second = asyncio.ensure_future(pool.run(release.wait, 30))
        # One turn of the event loop: each task takes its slot at its first step, before it awaits.
        await asyncio.sleep(0)
        try:  # refused, not queued: a queued check would be accepted once the others are released
            await pool.run(release.wait, 30)
        except Overloaded as exc:
            assert exc.retry_after == 1
        else:
            raise AssertionError("a third check was accepted by a pool of one worker and one waiting slot")
        release.set()
        assert await first and await second
        assert await pool.run(lambda: "free again") == "free again"

        # The checks run only on CPU the request threads leave (Linux's idle policy, lowest niceness).
        def priority() -> tuple[int, int]:
            tid = threading.get_native_id()
            return os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)

        policy, niceness = await pool.run(priority)
        assert policy == os.SCHED_IDLE and niceness == auth.HASH_NICENESS == 19
        assert os.sched_getscheduler(threading.get_native_id()) != os.SCHED_IDLE  # the caller's thread is untouched

    asyncio.run(scenario())
    pool.close()
    # And the server's own pool is sized to the CPUs it may use.
    assert auth.HashPool().workers == len(os.sched_getaffinity(0))
    assert auth.ARGON2_PARAMETERS.memory_cost == 65536 and auth.ARGON2_PARAMETERS.time_cost == 3


@pytest.mark.perf
def test_a_full_hash_pool_refuses_within_half_a_second():
    import asyncio
    import threading

    from contestkit.server.errors import Overloaded
    from contestkit.server.security import auth

    pool = auth.HashPool(workers=1, waiting=0)
    release = threading.Event()

    async def refusal_seconds() -> float:
        first = asyncio.ensure_future(pool.run(release.wait, 30))
        await asyncio.sleep(0)  # one turn of the loop: the first check takes the only slot
        started = time.monotonic()
        with pytest.raises(Overloaded):
            await pool.run(release.wait, 30)
        took = time.monotonic() - started
        release.set()
        assert await first
        return took

    assert asyncio.run(refusal_seconds()) < 0.5
    pool.close()


def test_the_api_runs_on_a_few_worker_threads(tmp_path, init_contest):
    """Finding: with the framework's 40 threads, status/<id>'s p99 at 200 clients on 2 cores was
    771 ms (187 ms with 4). The server sizes its pool from the CPUs (``request_threads`` overrides),
    refuses a pool of none, and its app sets the pool when it starts."""
    import asyncio
    import os

    import anyio.to_thread
    import yaml

    from contestkit.errors import UsageError
    from contestkit.server.app import create_app
    from contestkit.server.config import load_config

    data_dir = init_contest(tmp_path, LEVELS)
    config = load_config(data_dir)
    assert config.request_threads is None
    assert config.worker_threads == max(4, 2 * len(os.sched_getaffinity(0)))
    raw = yaml.safe_load((data_dir / "server.yaml").read_text())
    (data_dir / "server.yaml").write_text(yaml.safe_dump({**raw, "request_threads": 0}))
    with pytest.raises(UsageError, match="request_threads must be 1 or more"):
        load_config(data_dir)
    (data_dir / "server.yaml").write_text(yaml.safe_dump({**raw, "request_threads": 3}))
    assert load_config(data_dir).worker_threads == 3

    async def pool_size_while_serving() -> float:
        app = create_app(data_dir, start_scheduler=False)
        async with app.router.lifespan_context(app):
            return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert asyncio.run(pool_size_while_serving()) == 3
