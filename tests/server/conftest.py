"""Fixtures of the contest server tests: the database (SQLite and a throwaway PostgreSQL cluster) and
the job functions called in-process, for races made deterministic.

The server process and contest fixtures they share with the client tests are in ``tests/conftest.py``;
the classes behind these fixtures are in ``tests/support/`` (``postgres``, ``offline``, ``asgi``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import asgi
from tests.support.offline import OfflineContest, Queue
from tests.support.postgres import PostgresCluster

# -- a throwaway PostgreSQL cluster --------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for this test run (skips loudly where PostgreSQL is not installed)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database in the session's cluster."""
    return postgres_cluster.create_database(f"ck_{os.getpid()}_{int(time.monotonic() * 1000) % 10**9}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow])])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty contest database: a SQLite file, then a fresh database in the session's PostgreSQL
    cluster; every test that takes it (directly or through ``offline_contest``) runs on both."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contest.db'}"
    return str(request.getfixturevalue("postgres_url"))


# -- the job functions in-process, for races made deterministic ----------------------------------


@pytest.fixture
def offline_contest(
    tmp_path: Path, database_url: str, init_contest: Callable[..., Path], password: str
) -> Iterator[OfflineContest]:
    """A contest (two levels, one team ``alpha``) without a server, on each database, for in-process calls."""
    from sqlalchemy import select

    from contestkit.server.config import load_config
    from contestkit.server.contest.teams import add_team
    from contestkit.server.storage.db import Database, Team

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
    from contestkit.server.queue import operations

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
    return asgi.asgi_request
