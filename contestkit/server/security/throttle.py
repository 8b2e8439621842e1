"""Login throttling that slows guessers down without locking a team out of its own account.

Three counters, each a sliding window of failed password checks (``sliding_window.SlidingWindow``):

- per account (email): ``ACCOUNT_LIMIT`` failures in ``WINDOW`` seconds, then that email is refused
  (429) to every client the server does not know, the right password included, so that a guesser
  cannot tell when it found it;
- per client address: ``CLIENT_LIMIT`` failures in ``WINDOW`` across all emails, so that a guesser
  cannot try one password on every team instead;
- per known device: a client that logged in to this account before holds a signed *device cookie*
  (``contestkit_device``: the account's email digest, a random id and the time, HMAC-SHA256 with a
  key derived from ``registry/credentials.key``). A request that carries a valid one for the email
  it logs in to is counted on its own device counter (``DEVICE_LIMIT``) instead of the account's
  and the address's, so someone else's guesses neither lock it out nor are helped by it. This is
  OWASP's "device cookie" scheme.

Sessions already open and API tokens are never throttled: the throttle sits in front of password
checks only.

Where the counts live: in the server's database (``throttle_store.DatabaseStore``, table
``login_throttle``), so that every worker process of ``server run --workers N``, and every host on one
PostgreSQL, counts against one limit, and a restart keeps the counts. A guard made without a database
keeps them in its process's memory instead (``throttle_store.MemoryStore``), with the same rule.

Why it cannot be raced: a check *reserves* its slot before the password is hashed (``admit``) and
gives it back only when the password was right; with 20 concurrent guessers, in one process or
several, at most the limit's worth of checks are in flight or done, never more (``throttle_store``
says how the database store locks).

Why its size is bounded: keys are 16-byte digests (a 10 MB email costs 16 bytes), each key keeps at
most ``limit`` timestamps, and each counter keeps at most ``MAX_ENTRIES`` keys (see
``throttle_store`` for which ones are dropped first, and when).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from contestkit.client.credentials import DEVICE_COOKIE  # the client keeps it (credentials.py says why)
from contestkit.server.errors import TooManyAttempts
from contestkit.server.security.sliding_window import SlidingWindow
from contestkit.server.security.throttle_store import Counter, DatabaseStore, MemoryStore, Refusal, Slot, ThrottleStore
from contestkit.server.storage.db import Database

__all__ = ["DEVICE_COOKIE", "LoginGuard", "Ticket"]
WINDOW = 300.0
ACCOUNT_LIMIT = 10
CLIENT_LIMIT = 30
DEVICE_LIMIT = 10
MAX_ENTRIES = 100_000
DEVICE_COOKIE_DAYS = 180
_VERSION = "d1"


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class Ticket:
    """The slots one password check holds; given back (``LoginGuard.succeeded``) when it was right."""

    held: list[Slot]


class LoginGuard:
    """Admits password checks (``admit``), and issues and reads device cookies.

    With ``database`` (the server always passes its own) the counts are kept there and shared by all
    its processes; without, in this process's memory."""

    def __init__(
        self,
        key: bytes,
        *,
        database: Database | None = None,
        window: float = WINDOW,
        account_limit: int = ACCOUNT_LIMIT,
        client_limit: int = CLIENT_LIMIT,
        device_limit: int = DEVICE_LIMIT,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hmac.new(key, b"contestkit-device-cookie-v1", hashlib.sha256).digest()
        entries = max(1, max_entries)
        rules = {
            Counter.ACCOUNT: SlidingWindow(account_limit, window, entries),
            Counter.CLIENT: SlidingWindow(client_limit, window, entries),
            Counter.DEVICE: SlidingWindow(device_limit, window, entries),
        }
        self.store: ThrottleStore = MemoryStore(rules) if database is None else DatabaseStore(database, rules, clock)

    # -- device cookies --

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def device_cookie(self, email: str) -> str:
        """A new device cookie for a client that just proved it knows ``email``'s password."""
        body = f"{_VERSION}.{_b64(_digest(email))}.{_b64(secrets.token_bytes(12))}.{int(time.time())}"
        return f"{body}.{self._sign(body)}"

    def device_of(self, cookie: str | None, email: str) -> bytes | None:
        """The device id in a valid, unexpired cookie issued for ``email``; None otherwise."""
        if not cookie or len(cookie) > 200:
            return None
        body, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature.encode("ascii", "replace"), self._sign(body).encode("ascii")):
            return None
        try:
            version, account, device, issued = body.split(".")
            fresh = time.time() - int(issued) < DEVICE_COOKIE_DAYS * 86400
        except ValueError:
            return None
        if version != _VERSION or account != _b64(_digest(email)) or not fresh:
            return None
        return _digest(device)

    # -- admission --

    @staticmethod
    def _steps(email: str, client: str, device: bytes | None) -> list[tuple[Counter, bytes]]:
        """The counters a check is counted on, in the order their rows are locked (always the same)."""
        if device is not None:
            return [(Counter.DEVICE, device)]
        return [(Counter.CLIENT, _digest("client:" + client)), (Counter.ACCOUNT, _digest("account:" + email))]

    @staticmethod
    def _refuse(refusal: Refusal, email: str) -> TooManyAttempts:
        seconds = int(refusal.wait) + 1
        whom = "from this address" if refusal.counter is Counter.CLIENT else f"for {email[:254]}"
        return TooManyAttempts(f"Too many failed logins {whom}; try again in {seconds} s.", retry_after=seconds)

    def admit(self, email: str, client: str, device: bytes | None) -> Ticket:
        """Reserve a password check, or refuse it with ``TooManyAttempts`` (429, Retry-After)."""
        held = self.store.acquire(self._steps(email, client, device))
        if isinstance(held, Refusal):
            raise self._refuse(held, email)
        return Ticket(held)

    def refuse_if_throttled(self, email: str, client: str, device: bytes | None) -> None:
        """``TooManyAttempts`` when ``admit`` would refuse now; counts nothing and writes nothing. For a
        login that will be refused anyway (the hash pool is full): a throttled one still gets 429."""
        refusal = self.store.refusal(self._steps(email, client, device))
        if refusal is not None:
            raise self._refuse(refusal, email)

    def succeeded(self, ticket: Ticket) -> None:
        """The password was right: its check does not count as a failure."""
        self.store.release(ticket.held)
        ticket.held = []

    def abandoned(self, ticket: Ticket) -> None:
        """The check never ran (the hashing pool was full): it does not count either."""
        self.succeeded(ticket)
