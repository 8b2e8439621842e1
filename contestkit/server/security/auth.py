"""Passwords, sessions and API tokens.

- Team passwords are hashed with Argon2id (argon2-cffi, the winner of the Password Hashing
  Competition and OWASP's first choice): a stolen database does not hand out logins, and each guess
  costs the attacker real memory and time.
- A login creates a session: a random secret in an HttpOnly cookie, of which the database keeps only
  a SHA-256 (the secret has 256 bits of entropy, so a fast hash is enough there). Sessions expire
  after ``session_ttl_hours``.
- Scripts use API tokens (``Authorization: Bearer ck_...``), stored and checked the same way.
- Repeated wrong passwords are slowed down (HTTP 429, see ``throttle``) so that the API cannot be
  used to guess passwords at the speed of the network.
- Password checks run in their own small pool (``HashPool``), never on the request threads: a burst of
  logins then waits for (or is refused by) that pool, and every other route keeps its threads.

Argon2id parameters: RFC 9106's second recommended option ("low memory"), which is also argon2-cffi's
default: t=3 passes over m=64 MiB with p=4 lanes. It is above OWASP's minimum (19 MiB, t=2, p=1), costs
about 50-100 ms of one core on a current CPU, and 64 MiB per check in flight, which the pool bounds
(``HashPool.workers`` + ``HashPool.waiting`` checks at most: under 1 GiB on a 4-core host).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from contestkit.errors import UsageError
from contestkit.runs import cpuset
from contestkit.server.errors import Overloaded
from contestkit.server.security.shared_slots import SharedSlots
from contestkit.server.security.sliding_window import SlidingWindow

SESSION_COOKIE = "contestkit_session"
TOKEN_PREFIX = "ck_"
# API tokens always expire: a token without an end outlives the reason it was made (a CI job, a
# laptop). The default when none is asked for, and the longest one may ask for, in days.
API_TOKEN_DAYS = 90.0
API_TOKEN_MAX_DAYS = 365.0

ARGON2_PARAMETERS = profiles.RFC_9106_LOW_MEMORY
_hasher = PasswordHasher.from_parameters(ARGON2_PARAMETERS)
_dummy_hash: str | None = None


def _dummy() -> str:
    """A hash of a password nobody has, verified when the email is unknown so that the response time
    does not tell an attacker which emails are registered (made on first use: it costs a hash)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


def hash_password(password: str) -> str:
    """Argon2id hash (with its own salt and parameters) of a team password."""
    return _hasher.hash(password)


def encodable(text: str) -> bool:
    """Whether ``text`` is valid Unicode that UTF-8 (and so the database and the hasher) can store.

    JSON allows a lone surrogate such as ``"\\ud800"``; Python keeps it in the ``str``, and it fails
    only when encoded. Inputs are checked with this first, so that such text is an ordinary refusal.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; constant work whether or not the team exists.

    A password that is not valid Unicode (a lone surrogate) matches nothing: it is checked against
    the dummy hash, so that it costs as much as any wrong password, and then refused.
    """
    if not encodable(password):
        password_hash, password = None, ""
    try:
        return _hasher.verify(password_hash or _dummy(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


def new_secret(prefix: str = "") -> str:
    """A 256-bit random token for a session cookie or an API token."""
    return prefix + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database stores of a token: enough to look it up, useless to someone who reads it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password_rules(password: str) -> None:
    """Refuse passwords that would make the slow hash pointless."""
    if len(password) < 8:
        raise UsageError("The team password must have at least 8 characters.")
    if len(password) > 1024:
        raise UsageError("The team password must have at most 1024 characters.")
    if not encodable(password):
        raise UsageError("The team password is not valid text (it has an unpaired surrogate); choose another one.")


class LoginThrottle:
    """Allow ``limit`` failed logins per key in ``window`` seconds, then refuse until they age out.

    The throttle's timestamps in this process's memory: what ``throttle_store.MemoryStore`` keeps.
    The server itself keeps them in its database instead (``throttle_store.DatabaseStore``), so that
    all its worker processes share one count and a restart keeps it; both decide with the same rule
    (``sliding_window.SlidingWindow``).

    Its memory is bounded: a key is kept only while it has failures inside the window (expired
    ones are swept at least once a window), and never more than ``max_entries`` keys. When a flood
    of made-up emails fills the table, the keys with the fewest failures are forgotten first, so
    an email being guessed at (many failures, throttled or close to it) keeps its count.
    """

    def __init__(self, limit: int = 10, window: float = 300.0, max_entries: int = 100_000) -> None:
        self.rule = SlidingWindow(limit, window, max(1, max_entries))
        self.limit = limit
        self.window = window
        self.max_entries = self.rule.max_entries
        self._failures: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + window

    def _prune(self, key: Hashable, at: float) -> deque[float]:
        """The failures of ``key`` inside the window; a key left with none is forgotten."""
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and self.rule.expired(failures[0], at):
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def _sweep(self, at: float) -> None:
        """Forget keys whose failures all expired; then, over ``max_entries``, the least failed."""
        self._next_sweep = at + self.window
        for key in [k for k, failures in self._failures.items() if self.rule.expired(failures[-1], at)]:
            del self._failures[key]
        if len(self._failures) > self.max_entries:
            ranked = sorted(self._failures, key=lambda k: self.rule.rank(len(self._failures[k]), self._failures[k][-1]))
            for key in ranked[: len(self._failures) - self.rule.keep]:
                del self._failures[key]

    def retry_after(self, key: Hashable) -> float:
        """Seconds until another attempt is allowed (0 when it is allowed now)."""
        at = time.monotonic()
        with self._lock:
            return self.rule.wait(self._prune(key, at), at)

    def failed(self, key: Hashable) -> None:
        at = time.monotonic()
        with self._lock:
            self._prune(key, at)
            self._failures.setdefault(key, deque()).append(at)
            if len(self._failures) > self.max_entries or at >= self._next_sweep:
                self._sweep(at)

    def succeeded(self, key: Hashable) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def acquire(self, key: Hashable) -> float:
        """Count an attempt now, before its password is checked, if the limit allows it (returns 0);
        else the seconds to wait. Check and count are one step under the lock, so concurrent
        attempts cannot all pass a check that only one of them should."""
        at = time.monotonic()
        with self._lock:
            wait = self.rule.wait(self._prune(key, at), at)
            if wait > 0:
                return wait
            self._failures.setdefault(key, deque()).append(at)
            if len(self._failures) > self.max_entries or at >= self._next_sweep:
                self._sweep(at)
            return 0.0

    def release(self, key: Hashable) -> None:
        """Give back one attempt counted by ``acquire`` (it was not a failure after all)."""
        with self._lock:
            failures = self._failures.get(key)
            if failures:
                failures.pop()
                if not failures:
                    del self._failures[key]


HASH_NICENESS = 19


def _lower_priority() -> None:
    """Hash only with the CPU the request threads leave: Linux's ``SCHED_IDLE`` policy for this
    thread (the threads libargon2 starts for its lanes inherit it), else the lowest niceness.

    Why the idle policy and not only a niceness: at niceness 10 a burst of 100 logins on a 2-core
    machine still took enough CPU to raise the other routes' p99 from 15 to 444 ms (SQLite, seeded,
    200 clients; ``bench/server_load.py --login-burst``, 2026-11-29): a niced thread keeps about a
    tenth of the CPU against every runnable request thread, an idle-policy thread none of it. A
    login waits longer during a burst; nothing else does.
    """
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux: the niceness below still lowers it
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, HASH_NICENESS)
    except (AttributeError, OSError):  # not allowed: hashing at the same priority still works
        pass


class HashPool:
    """Argon2 checks on ``workers`` threads of their own (one per CPU), at most ``waiting`` more queued.

    Why: a check takes a core for about 0.1 s; on the request pool, 100 concurrent logins took all
    40 threads for seconds and every other route waited behind them. Here they wait for this pool
    only, and when it is full a login is refused at once (``Overloaded``: 503 with Retry-After)
    instead of queueing for many seconds. argon2-cffi releases the GIL while it hashes.
    """

    def __init__(
        self, workers: int | None = None, waiting: int | None = None, *, shared: SharedSlots | None = None
    ) -> None:
        """``shared``: the places are the server's, shared with its other processes (``shared_by``)."""
        self.workers = workers or max(1, len(cpuset.available()))
        self.waiting = self.workers * 4 if waiting is None else waiting
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="argon2", initializer=_lower_priority)
        self._free = self.workers + self.waiting
        self._lock = threading.Lock()
        self._shared = shared

    def full(self) -> bool:
        """Whether ``slot()`` would refuse now. A login asks before the throttle counts it, so that a
        login refused in a burst writes nothing to the database (the throttle's counts are there)."""
        if self._shared is not None:
            return not self._shared.any_free()
        return self._free <= 0

    @staticmethod
    def refusal() -> Overloaded:
        """What a login is answered when the pool is full: 503 with ``Retry-After: 1``."""
        return Overloaded("The server is busy checking other logins; try again in a second.", retry_after=1)

    @classmethod
    def shared_by(cls, processes: int, slots_dir: Path) -> HashPool:
        """This process's pool when ``processes`` API workers each have one (``server run --workers N``):
        ``ceil(CPUs / N)`` hashing threads, so the server as a whole hashes about one password per CPU at
        once (and holds the memory that bounds), and the machine's places (running and waiting) shared
        with the other workers through files in ``slots_dir`` (``SharedSlots``: a burst that lands
        unevenly on the workers is refused no sooner than one process would refuse it)."""
        cpus, processes = max(1, len(cpuset.available())), max(1, processes)
        return cls(-(-cpus // processes), shared=SharedSlots(slots_dir, cpus * 5))  # ceil: at least one each

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A place on the pool for the ``with`` block; ``Overloaded`` at once when all are taken.

        Why a slot of its own: a login takes it before any other work (the team's row, a thread
        hop), so a refused login in a burst costs next to nothing; during 100 concurrent logins most
        are refused, and their database reads were what the other routes felt."""
        if self._shared is not None:
            place = self._shared.take()
            if place is None:
                raise self.refusal()
            try:
                yield
            finally:
                self._shared.give(place)
            return
        with self._lock:
            if self._free <= 0:
                raise self.refusal()
            self._free -= 1
        try:
            yield
        finally:
            with self._lock:
                self._free += 1

    async def compute(self, function: Callable[..., object], *args: object) -> object:
        """``function(*args)`` on the pool's threads; call it inside ``slot()``."""
        return await asyncio.wrap_future(self._executor.submit(function, *args))

    async def run(self, function: Callable[..., object], *args: object) -> object:
        """``function(*args)`` on the pool; ``Overloaded`` when all its slots are taken."""
        with self.slot():
            return await self.compute(function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._shared is not None:
            self._shared.close()
