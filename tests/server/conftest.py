"""Fixtures of the contest server tests: the database (SQLite and a throwaway PostgreSQL cluster) and
the job functions called in-process, for races made deterministic.

The server process and contest fixtures they share with the client tests are in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# -- a throwaway PostgreSQL cluster --------------------------------------------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]) -> Iterator[str]:
    """Start a PostgreSQL cluster in a temporary directory for this test run; yields a base URL.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user that
    Debian's package creates.
    """
    initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not postgres:
        pytest.skip("POSTGRES TESTS SKIPPED: PostgreSQL is not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("POSTGRES TESTS SKIPPED: the psycopg driver is not installed (pip install 'psycopg[binary]')")
    base = Path(tempfile_dir(tmp_path_factory))
    data, sockets = base / "pgdata", base / "sock"
    sockets.mkdir(parents=True)
    prefix: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("POSTGRES TESTS SKIPPED: running as root without runuser to drop to the postgres user")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *prefix,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=(base / "postgres.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=1).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.terminate()
                raise RuntimeError((base / "postgres.log").read_text()) from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    shutil.rmtree(base, ignore_errors=True)


def tempfile_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory the postgres user can reach (pytest's base temp is private to root)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="contestkit-pg-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def postgres_url(postgres_cluster: str) -> str:
    """A fresh, empty database in the session's cluster."""
    import psycopg

    name = f"ck_{os.getpid()}_{int(time.monotonic() * 1000) % 10**9}"
    port = postgres_cluster.rsplit(":", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_cluster}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty contest database: a SQLite file, then a fresh database in the session's PostgreSQL
    cluster; every test that takes it (directly or through ``offline_contest``) runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contest.db'}"
    return str(request.getfixturevalue("postgres_url"))


# -- the job functions in-process, for races made deterministic ----------------------------------


@dataclass
class OfflineContest:
    """A contest data directory without a server: the library's functions called directly."""

    data_dir: Path
    config: Any
    database: Any
    team_id: int

    def finished_job(self, score: float = 6.0) -> int:
        """A job of the team that has finished (written as the queue would, without running it)."""
        from sqlalchemy import update

        from contestkit.server import operations
        from contestkit.server.db import Job, Worker, now

        job = operations.start_job(self.database, self.config, self.team_id, "score-5")
        with self.database.session() as session:
            session.execute(
                update(Job).where(Job.id == job.id).values(status="finished", score=score, finished_at=now())
            )
            session.execute(update(Worker).where(Worker.job_id == job.id).values(status="finished", score=score))
        return job.id

    def job(self, job_id: int, *, as_shown: bool = False) -> dict[str, Any]:
        """The job's document as stored (``as_shown``: as the API shows it, stalled when its heartbeat is stale)."""
        from contestkit.server import operations
        from contestkit.server.documents import job_document

        stale_after = self.config.heartbeat_timeout if as_shown else None
        with self.database.session() as db:
            return job_document(operations.get_job(db, self.team_id, job_id), stale_after=stale_after)


@pytest.fixture
def offline_contest(
    tmp_path: Path, database_url: str, init_contest: Callable[..., Path], password: str
) -> Iterator[OfflineContest]:
    """A contest (two levels, one team ``alpha``) without a server, on each database, for in-process calls."""
    from sqlalchemy import select

    from contestkit.server.admin import add_team
    from contestkit.server.config import load_config
    from contestkit.server.db import Database, Team

    data_dir = init_contest(tmp_path, [("Fake", "Level1"), ("Fake", "Level2")], database_url=database_url)
    add_team(data_dir, name="alpha", email="alpha@example.org", password=password)
    config = load_config(data_dir)
    database = Database(config.database())
    with database.session() as session:
        team_id = session.scalar(select(Team.id).where(Team.name == "alpha"))
    contest = OfflineContest(data_dir, config, database, int(team_id))
    yield contest
    contest.database.dispose()


@pytest.fixture
def interleave_before_write(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], None]:
    """``interleave_before_write(other_request)`` makes a race deterministic: ``restart_job`` has read
    the job and checked that its team has no active job, and ``other_request()`` (another request, in
    its own transaction) commits right then, before the restart writes anything."""
    from contestkit.server import operations

    def interleave(other_request: Callable[[], Any]) -> None:
        real = operations._active_job

        def racing(session: Any, team_id: int) -> Any:
            found = real(session, team_id)
            monkeypatch.setattr(operations, "_active_job", real)  # once: the other request checks for real
            other_request()
            return found

        monkeypatch.setattr(operations, "_active_job", racing)

    return interleave


# -- the scheduler in-process ---------------------------------------------------------------------


class Queue:
    """A Scheduler of the offline contest, stopped when the test ends."""

    def __init__(self, contest: OfflineContest, level_runner: Any = None) -> None:
        from contestkit.server.executors.function import FunctionExecutor
        from contestkit.server.scheduling import Scheduler
        from tests.server.fake_level_runner import fake_level_runner

        level_runner = level_runner or fake_level_runner
        self.contest = contest
        self.runner = Scheduler(contest.database, contest.config, FunctionExecutor(level_runner), poll_seconds=0.05)

    def start(self) -> Any:
        self.runner.start()
        return self.runner

    def submit(self, tag: str = "score-5") -> int:
        from contestkit.server import operations

        job_id = operations.start_job(self.contest.database, self.contest.config, self.contest.team_id, tag).id
        self.runner.wake()
        return job_id

    def wait(self, job_id: int, statuses: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = self.contest.job(job_id)
            if doc["status"] in statuses:
                return doc
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {statuses} within {timeout} s: {doc}")


@pytest.fixture
def queue(offline_contest: OfflineContest) -> Iterator[Queue]:
    """A ``Queue`` (a Scheduler of the offline contest, the fake level runner evaluating), not started."""
    made = Queue(offline_contest)
    yield made
    made.runner.stop(timeout=10)


# -- the API in-process, without a server or an HTTP client library -----------------------------


@pytest.fixture
def asgi_request() -> Callable[..., tuple[int, dict[str, str], bytes]]:
    """``asgi_request(app, method, path, json=None, headers=None)`` -> (status, headers, body): one
    request through the ASGI app in this process, so a test can watch the statements it runs."""
    import asyncio
    import json as json_module

    def call(app: Any, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None):
        body = b"" if json is None else json_module.dumps(json).encode()
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        raw += [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
        if json is not None:
            raw.append((b"content-type", b"application/json"))
        path, _, query = path.partition("?")
        scope = {"type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(), "headers": raw, "scheme": "http", "server": ("testserver", 80),
                 "client": ("127.0.0.1", 1234), "root_path": ""}  # fmt: skip
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        answer_headers: dict[str, str] = {}
        for key, value in start["headers"]:  # repeated headers (set-cookie) joined by newlines
            name = key.decode()
            answer_headers[name] = (answer_headers[name] + "\n" if name in answer_headers else "") + value.decode()
        return start["status"], answer_headers, b"".join(m.get("body", b"") for m in sent[1:])

    return call
