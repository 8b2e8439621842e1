"""The login throttle's counts in the server's database (issue 28): one limit for every process and
host of a server, kept across a restart, bounded, and not raced; on SQLite and on PostgreSQL.

Real databases throughout; two ``Database`` objects (or two apps, or two processes) on one database
stand for the worker processes of ``server run --workers N``."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from contestkit.server.errors import TooManyAttempts
from contestkit.server.security import housekeeping
from contestkit.server.security.throttle import LoginGuard
from contestkit.server.security.throttle_store import Counter, DatabaseStore
from contestkit.server.storage.db import Database, LoginFailures
from contestkit.server.storage.migrations import migrate

KEY = b"k" * 32


class Clock:
    """Wall-clock seconds the test moves by hand (the store's ``clock``)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def databases(database_url: str) -> Iterator[Callable[[], Database]]:
    """``databases()``: a new ``Database`` (own engine, own connections) on the one migrated database."""
    made: list[Database] = []

    def new() -> Database:
        made.append(Database(database_url))
        return made[-1]

    migrate(new())
    yield new
    for database in made:
        database.dispose()


def _fail(guard: LoginGuard, email: str = "team@example.org", client: str = "198.51.100.7") -> None:
    """One wrong password: the check is admitted and never given back."""
    guard.admit(email, client, None)


def _database_of(guard: LoginGuard) -> Database:
    assert isinstance(guard.store, DatabaseStore)
    return guard.store.database


def _rows(database: Database, counter: Counter) -> int:
    with database.session() as db:
        return int(db.scalar(select(func.count()).select_from(LoginFailures).where(LoginFailures.counter == counter)))


def test_the_limit_holds_across_processes_and_a_restart(databases):
    """Two guards on two engines (two worker processes): 10 failures between them, the 11th refused by
    either, with the Retry-After of the oldest failure; a guard made anew (a restart) still refuses."""
    clock = Clock()
    first, second = (LoginGuard(KEY, database=databases(), clock=clock) for _ in range(2))
    for i in range(10):
        _fail(first if i % 2 else second)
        clock.now += 1.0
    for guard in (first, second):
        with pytest.raises(TooManyAttempts, match="for team@example.org") as refused:
            _fail(guard)
        assert refused.value.retry_after == int(300.0 - 10.0) + 1  # the oldest failure leaves in 290 s
    restarted = LoginGuard(KEY, database=databases(), clock=clock)
    with pytest.raises(TooManyAttempts):
        _fail(restarted)
    # All steps or none: the refused checks' client step was rolled back with them.
    with _database_of(restarted).session() as db:
        assert db.scalar(select(LoginFailures.failures).where(LoginFailures.counter == Counter.CLIENT)) == 10
    # Sliding, not fixed: once the oldest failure left the window, exactly one more check is allowed.
    clock.now += 290.0
    _fail(restarted)
    with pytest.raises(TooManyAttempts):
        _fail(first)


def test_a_right_password_gives_its_check_back_to_every_process(databases):
    """Reserve before the hash, give back on success: the check another process reserved and gave back
    does not count; an abandoned one (the pool was full) neither."""
    clock = Clock()
    first, second = (LoginGuard(KEY, database=databases(), clock=clock) for _ in range(2))
    for _ in range(9):
        _fail(first)
    ticket = second.admit("team@example.org", "198.51.100.7", None)  # the 10th check, in flight
    with pytest.raises(TooManyAttempts):
        _fail(first)  # checks in flight count
    second.succeeded(ticket)
    ticket = first.admit("team@example.org", "198.51.100.7", None)
    first.abandoned(ticket)
    _fail(second)  # the 10th failure
    with pytest.raises(TooManyAttempts):
        _fail(first)


def test_a_known_device_and_the_client_address_are_counted_across_processes(databases):
    clock = Clock()
    first, second = (LoginGuard(KEY, database=databases(), clock=clock, client_limit=4) for _ in range(2))
    device = first.device_of(first.device_cookie("team@example.org"), "team@example.org")
    assert device is not None and second.device_of(first.device_cookie("team@example.org"), "team@example.org")
    for i in range(10):
        (first if i % 2 else second).admit("team@example.org", "198.51.100.7", device)
    with pytest.raises(TooManyAttempts):
        second.admit("team@example.org", "198.51.100.7", device)
    for i in range(4):
        _fail(first if i % 2 else second, email=f"user{i}@example.org", client="203.0.113.9")
    with pytest.raises(TooManyAttempts, match="from this address"):
        _fail(first, email="fresh@example.org", client="203.0.113.9")


def _guess_in_a_process(url: str, start: Any, results: Any) -> None:
    """One worker process: 20 threads, 3 guesses each, all at once; puts (admitted per target, errors).

    Ten guess at an account, each from its own address, so that only the account's row is shared
    (the client's row, locked first, would otherwise serialise them and hide a race on the
    account's); ten guess with one known device, a check of one step (its row is the first write)."""
    database = Database(url)
    guard = LoginGuard(KEY, database=database)
    admitted = {"account": 0, "device": 0}
    errors: list[str] = []
    ready = threading.Barrier(20)
    lock = threading.Lock()

    def guesses(target: str, client: str) -> None:
        ready.wait()
        for _ in range(3):
            try:
                guard.admit("target@example.org", client, b"d" * 16 if target == "device" else None)
                with lock:
                    admitted[target] += 1
            except TooManyAttempts:
                pass
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=guesses, args=(target, f"10.{os.getpid() % 250}.{i}.1"))
        for i in range(10)
        for target in ("account", "device")
    ]
    start.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    database.dispose()
    results.put(json.dumps([admitted, errors]))


def test_concurrent_guessers_in_two_processes_get_at_most_the_limit(databases, database_url):
    """Concurrent guessers spread over 2 processes, 60 guesses at an account and 60 with a device:
    exactly 10 checks of each are let through (no more: the row is written, so locked, before it is
    read; no fewer: nothing failed or deadlocked)."""
    databases()  # migrated
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_guess_in_a_process, args=(database_url, start, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [json.loads(results.get(timeout=120)) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert [errors for _, errors in outcomes] == [[], []]
    for target in ("account", "device"):
        assert sum(admitted[target] for admitted, _ in outcomes) == 10, outcomes


def test_a_flood_of_made_up_emails_stays_bounded_and_keeps_the_guessed_count(databases):
    """Each counter keeps at most ``max_entries`` keys; the least failed go first, so the email being
    guessed at (10 failures) keeps its count through a flood of one-failure emails."""
    clock = Clock()
    database = databases()
    guard = LoginGuard(KEY, database=database, clock=clock, max_entries=20)
    for _ in range(10):
        _fail(guard, client="198.51.100.7")
    for i in range(120):
        clock.now += 0.5
        _fail(guard, email=f"random{i}@example.org", client=f"10.0.{i // 250}.{i % 250}")
        assert _rows(database, Counter.ACCOUNT) <= 20
        assert _rows(database, Counter.CLIENT) <= 20
    with pytest.raises(TooManyAttempts, match="for team@example.org"):
        _fail(guard, client="203.0.113.1")


def test_expired_keys_are_pruned_by_the_throttle_and_by_the_sweeper(databases):
    clock = Clock()
    database = databases()
    guard = LoginGuard(KEY, database=database, clock=clock)
    for i in range(50):
        _fail(guard, email=f"random{i}@example.org", client=f"10.0.0.{i}")
    assert _rows(database, Counter.ACCOUNT) == 50
    # The throttle's own sweep (at least once a window): after the window, one login leaves one key.
    clock.now += 301.0
    _fail(guard, email="late@example.org", client="10.0.1.1")
    assert _rows(database, Counter.ACCOUNT) == 1 and _rows(database, Counter.CLIENT) == 1
    # The housekeeping sweeper deletes expired keys too, with no login to trigger it.
    assert housekeeping.sweep_expired(database, at=clock.now + 301.0) == 0  # sessions and tokens: none
    assert _rows(database, Counter.ACCOUNT) == 0 and _rows(database, Counter.CLIENT) == 0
    assert isinstance(guard.store, DatabaseStore)


def test_the_server_counts_across_two_apps_on_one_database(tmp_path: Path, database_url, init_contest, asgi_request):
    """Two apps on one data directory (two workers): the 11th wrong password is refused by whichever
    app gets it; the right one too (429), for a client the server does not know."""
    from contestkit.server.app import create_app
    from contestkit.server.contest.teams import add_team

    data_dir = init_contest(tmp_path, [("Fake", "Level1")], database_url=database_url)
    add_team(data_dir, name="alpha", email="alpha@example.org", password="a long bench password")
    apps = [create_app(data_dir, start_scheduler=False) for _ in range(2)]
    try:
        wrong = {"email": "alpha@example.org", "password": "guess guess"}
        codes = [asgi_request(apps[i % 2], "POST", "/rest/login", json=wrong)[0] for i in range(10)]
        assert codes == [401] * 10
        for app in apps:
            status, headers, _ = asgi_request(app, "POST", "/rest/login", json=wrong)
            assert status == 429 and int(headers["retry-after"]) > 0
        right = {"email": "alpha@example.org", "password": "a long bench password"}
        assert asgi_request(apps[0], "POST", "/rest/login", json=right)[0] == 429
    finally:
        for app in apps:
            app.state.services.database.dispose()
            app.state.services.hashes.close()


def test_a_login_refused_by_a_full_hash_pool_writes_nothing(tmp_path: Path, database_url, init_contest, asgi_request):
    """A login burst: the logins a full pool refuses (503) cost no database write; a throttled one is
    still 429 then (a read says so), as when the throttle was in memory."""
    from contestkit.server.app import create_app
    from contestkit.server.security import auth

    data_dir = init_contest(tmp_path, [("Fake", "Level1")], database_url=database_url)
    app = create_app(data_dir, start_scheduler=False)
    app.state.services.hashes.close()
    services = app.state.services = dataclasses.replace(app.state.services, hashes=auth.HashPool(workers=1, waiting=0))
    statements: list[str] = []
    event.listen(
        services.database.engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: statements.append(statement.split()[0].upper()),
    )
    writes = {"INSERT", "UPDATE", "DELETE"}
    wrong = {"email": "nobody@example.org", "password": "guess guess"}
    try:
        assert asgi_request(app, "POST", "/rest/login", json=wrong)[0] == 401
        assert writes & set(statements)  # the control: an admitted check is written
        for _ in range(9):
            asgi_request(app, "POST", "/rest/login", json=wrong)
        statements.clear()
        with services.hashes.slot():  # the pool is full
            status, headers, _ = asgi_request(app, "POST", "/rest/login", json=wrong)
            assert status == 429 and int(headers["retry-after"]) > 1  # throttled beats busy, as before
            other = {"email": "someone@example.org", "password": "guess guess"}
            status, headers, _ = asgi_request(app, "POST", "/rest/login", json=other)
            assert status == 503 and headers["retry-after"] == "1"
        assert statements and not writes & set(statements), statements
    finally:
        services.database.dispose()
        services.hashes.close()


def test_a_guard_without_a_database_keeps_the_same_rule_in_its_memory():
    """``MemoryStore``: the same rule (reserve, refuse the 11th, give back on success, all steps or
    none), one process only: a second guard does not see the first one's counts."""
    guard = LoginGuard(KEY, client_limit=12)
    for _ in range(9):
        _fail(guard)
    ticket = guard.admit("team@example.org", "198.51.100.7", None)
    with pytest.raises(TooManyAttempts, match="for team@example.org") as refused:
        _fail(guard)
    assert 0 < refused.value.retry_after <= 301
    with pytest.raises(TooManyAttempts):
        guard.refuse_if_throttled("team@example.org", "198.51.100.7", None)
    guard.succeeded(ticket)
    guard.refuse_if_throttled("team@example.org", "198.51.100.7", None)  # no longer throttled
    _fail(guard)
    # The refused check gave its client slot back (all steps or none): the address has 10 of 12 here.
    _fail(guard, email="other@example.org")
    _fail(guard, email="third@example.org")
    with pytest.raises(TooManyAttempts, match="from this address"):
        _fail(guard, email="fourth@example.org")
    _fail(LoginGuard(KEY))  # another process's memory: nothing counted there


def test_the_limit_holds_across_the_workers_of_a_real_server(make_contest, database_url, password):
    """``server run --workers 2`` (the real CLI): 20 concurrent guessers on fresh connections, so both
    worker processes take guesses; 10 failed checks in all, not 10 per worker. A guess a worker's
    full hash pool refused (503) was not counted, so the count is finished one guess at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    contest = make_contest([("Fake", "Level1")], database_url=database_url, workers=2)
    contest.add_team("Alpha", "alpha@example.org")
    url = contest.url + "/rest/login"

    def guess(i: int) -> int:
        return requests.post(url, json={"email": "alpha@example.org", "password": f"guess {i}"}, timeout=60).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(guess, range(40)))
    assert set(codes) <= {401, 429, 503} and codes.count(401) <= 10, codes
    failed = codes.count(401)
    for i in range(40, 60):
        code = guess(i)
        if code == 429:
            break
        failed += code == 401
    assert failed == 10, codes
    assert [guess(i) for i in range(10)] == [429] * 10
    right = requests.post(url, json={"email": "alpha@example.org", "password": password}, timeout=60)
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0
