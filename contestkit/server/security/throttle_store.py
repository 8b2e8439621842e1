"""Where the login throttle keeps its counts: the server's database (``DatabaseStore``), or one
process's memory (``MemoryStore``, for a guard without a database).

Why the database: the API runs in several worker processes (``server run --workers N``), and a
server may run on several hosts against one PostgreSQL; counts kept in each process would let a
guesser through N times the limit. In the database every process sees one count per key, and a
restart keeps it. Both stores decide with ``sliding_window.SlidingWindow``; they only keep the
timestamps differently.

Why it cannot be raced across processes: ``acquire`` *writes* each key's row first (an
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``), which on PostgreSQL locks that row until the
transaction ends and on SQLite takes the database's write lock at once. Only then are the stamps read,
decided on and written back, so two processes cannot both read "9 of 10" and both pass. (A read first
would race on PostgreSQL's READ COMMITTED, and on SQLite a deferred read-then-write can fail with
SQLITE_BUSY on the upgrade.) Rows are locked in one order (client, then account), so two logins
cannot deadlock.

Why it stays bounded: each counter keeps at most ``max_entries`` keys, plus what the processes add
between two checks of the bound (each process checks after every ``max_entries // 100`` new keys, and
at least once a window): then the expired rows go, and, over the bound, the least failed keys (the
same preference as in memory). The housekeeping sweeper deletes expired rows too
(``sweep_expired``).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from contestkit.server.security.auth import LoginThrottle
from contestkit.server.security.sliding_window import SlidingWindow
from contestkit.server.storage.db import Database, LoginFailures

log = logging.getLogger("contestkit.server.security.throttle_store")


class Counter(enum.StrEnum):
    """The throttle's three counters (``throttle`` says what each one counts)."""

    ACCOUNT = "account"
    CLIENT = "client"
    DEVICE = "device"


Step = tuple[Counter, bytes]


@dataclass(frozen=True)
class Slot:
    """One check counted on one key; ``stamp`` is the time it was counted at (the database store
    gives back exactly that one)."""

    counter: Counter
    key: bytes
    stamp: float


@dataclass(frozen=True)
class Refusal:
    """The check was not counted: ``counter`` is at its limit for ``wait`` more seconds."""

    counter: Counter
    wait: float


class ThrottleStore(Protocol):
    """What ``LoginGuard`` needs of a store."""

    def acquire(self, steps: Sequence[Step]) -> list[Slot] | Refusal:
        """Count one check on every step's key, or on none of them (the first refusal)."""
        ...

    def refusal(self, steps: Sequence[Step]) -> Refusal | None:
        """Whether ``acquire`` would refuse now, without counting (writes nothing)."""
        ...

    def release(self, slots: Sequence[Slot]) -> None:
        """Give back checks that ``acquire`` counted (the password was right, or never checked)."""
        ...


class MemoryStore:
    """The counts in this process's memory: one ``auth.LoginThrottle`` per counter."""

    def __init__(self, rules: Mapping[Counter, SlidingWindow]) -> None:
        self.throttles = {
            counter: LoginThrottle(rule.limit, rule.window, rule.max_entries) for counter, rule in rules.items()
        }

    def acquire(self, steps: Sequence[Step]) -> list[Slot] | Refusal:
        held: list[Slot] = []
        for counter, key in steps:
            wait = self.throttles[counter].acquire(key)
            if wait > 0:
                self.release(held)
                return Refusal(counter, wait)
            held.append(Slot(counter, key, 0.0))
        return held

    def refusal(self, steps: Sequence[Step]) -> Refusal | None:
        for counter, key in steps:
            wait = self.throttles[counter].retry_after(key)
            if wait > 0:
                return Refusal(counter, wait)
        return None

    def release(self, slots: Sequence[Slot]) -> None:
        for slot in slots:
            self.throttles[slot.counter].release(slot.key)


# Takes the key's row lock (PostgreSQL) or the write lock (SQLite) before anything is read: a new key
# gets an empty row, an existing one an update that changes nothing, and either way its stamps come back.
_LOCK_ROW = text(
    "INSERT INTO login_throttle (counter, key, stamps, failures, expires_at) VALUES (:counter, :key, '', 0, 0) "
    "ON CONFLICT (counter, key) DO UPDATE SET failures = login_throttle.failures RETURNING stamps"
)
_LOCK_EXISTING = text(
    "UPDATE login_throttle SET failures = failures WHERE counter = :counter AND key = :key RETURNING stamps"
)
_WRITE = text(
    "UPDATE login_throttle SET stamps = :stamps, failures = :failures, expires_at = :expires_at "
    "WHERE counter = :counter AND key = :key"
)
_FORGET = text("DELETE FROM login_throttle WHERE counter = :counter AND key = :key")


def _stamps(stored: str) -> list[float]:
    return [float(stamp) for stamp in stored.split()]


def _row(counter: Counter, key: bytes) -> dict[str, str]:
    return {"counter": str(counter), "key": key.hex()}


class DatabaseStore:
    """The counts in the server's database (table ``login_throttle``), shared by all its processes.

    ``clock`` is wall-clock time (UNIX seconds), the one clock that processes and hosts share (hosts
    on one PostgreSQL should keep theirs synchronised: a host whose clock is s seconds behind counts
    its failures s seconds longer). Checking the bound costs a count of the counter's index (9-40 ms
    at 100,000 keys on SQLite, once per 1,000 new keys), and cutting a full table to 90% about 0.1 s
    (once per 10,000 new keys), on the login that triggers it."""

    def __init__(
        self, database: Database, rules: Mapping[Counter, SlidingWindow], clock: Callable[[], float] = time.time
    ) -> None:
        self.database = database
        self.rules = dict(rules)
        self.clock = clock
        window = max(rule.window for rule in self.rules.values())
        self._check_every = max(1, min(rule.max_entries for rule in self.rules.values()) // 100)
        self._lock = threading.Lock()
        self._new_keys = 0
        self._next_sweep = clock() + window
        self._window = window

    def _write(self, conn: Connection, counter: Counter, key: bytes, live: list[float]) -> None:
        if live:
            expires_at = max(live) + self.rules[counter].window
            stored = " ".join(repr(stamp) for stamp in live)
            conn.execute(
                _WRITE, {**_row(counter, key), "stamps": stored, "failures": len(live), "expires_at": expires_at}
            )
        else:
            conn.execute(_FORGET, _row(counter, key))

    def acquire(self, steps: Sequence[Step]) -> list[Slot] | Refusal:
        held: list[Slot] = []
        new_keys = 0
        at = 0.0
        with self.database.engine.connect() as conn:
            for counter, key in steps:
                stored = conn.execute(_LOCK_ROW, _row(counter, key)).scalar_one()
                at = self.clock()  # once the row is ours: stamps stay in order across processes
                rule = self.rules[counter]
                live = rule.live(_stamps(stored), at)
                wait = rule.wait(live, at)
                if wait > 0:
                    conn.rollback()  # nothing counted, on any step
                    return Refusal(counter, wait)
                self._write(conn, counter, key, [*live, at])
                held.append(Slot(counter, key, at))
                new_keys += stored == ""
            conn.commit()
        self._after_acquire(new_keys, at)
        return held

    def refusal(self, steps: Sequence[Step]) -> Refusal | None:
        at = self.clock()
        with self.database.engine.connect() as conn:
            for counter, key in steps:
                stored = conn.execute(
                    select(LoginFailures.stamps).where(
                        LoginFailures.counter == str(counter), LoginFailures.key == key.hex()
                    )
                ).scalar()
                rule = self.rules[counter]
                wait = rule.wait(rule.live(_stamps(stored or ""), at), at)
                if wait > 0:
                    return Refusal(counter, wait)
        return None

    def release(self, slots: Sequence[Slot]) -> None:
        at = self.clock()
        with self.database.engine.begin() as conn:
            for slot in slots:
                stored = conn.execute(_LOCK_EXISTING, _row(slot.counter, slot.key)).scalar()
                if stored is None:  # swept meanwhile: nothing left to give back
                    continue
                stamps = _stamps(stored)
                if slot.stamp in stamps:
                    stamps.remove(slot.stamp)
                self._write(conn, slot.counter, slot.key, self.rules[slot.counter].live(stamps, at))

    def _after_acquire(self, new_keys: int, at: float) -> None:
        """Check the bound after every ``max_entries // 100`` new keys this process made, and sweep
        the expired rows at least once a window."""
        with self._lock:
            self._new_keys += new_keys
            if self._new_keys < self._check_every and at < self._next_sweep:
                return
            self._new_keys = 0
            self._next_sweep = at + self._window
        try:
            self.sweep(at)
        except DBAPIError as exc:  # e.g. a deadlock with another process's sweep: the next one retries
            log.warning("sweeping the login throttle's table failed (retried later): %s", exc)

    def sweep(self, at: float | None = None) -> None:
        """Delete the expired rows; then, for each counter over its bound, the least failed keys."""
        at = self.clock() if at is None else at
        with self.database.session() as db:
            sweep_expired(db, at)
        for counter, rule in self.rules.items():
            with self.database.session() as db:
                kept = (
                    db.scalar(
                        select(func.count()).select_from(LoginFailures).where(LoginFailures.counter == str(counter))
                    )
                    or 0
                )
                if kept <= rule.max_entries:
                    continue
                least_failed = (
                    select(LoginFailures.key)
                    .where(LoginFailures.counter == str(counter))
                    .order_by(LoginFailures.failures, LoginFailures.expires_at)  # ``SlidingWindow.rank``
                    .limit(kept - rule.keep)
                )
                db.execute(
                    delete(LoginFailures).where(
                        LoginFailures.counter == str(counter), LoginFailures.key.in_(least_failed.scalar_subquery())
                    )
                )


def sweep_expired(db: Session, at: float) -> int:
    """Delete the throttle's keys whose failures all left their window by ``at``; returns how many."""
    result = db.execute(delete(LoginFailures).where(LoginFailures.expires_at <= at))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
