"""The server's refusals, by what went wrong rather than by HTTP number.

Why: the library (operations on jobs, logins, tokens) says *what* is wrong (not found, conflict,
forbidden...) and the API alone decides which HTTP status that is (``api.errors.STATUS_OF``), in one
handler. A library function can then be called from a script, a test or a later admin page without
HTTP leaking into it, and a status can be changed in one place.

Each error carries one sentence that says what to do, shown to the client as ``{"detail": ...}``.
(The client has its own ``contestkit.client.api_client.ApiError`` for the answers it receives.)
"""

from __future__ import annotations

from contestkit.errors import ContestkitError


class Refused(ContestkitError):
    """A request the server refuses; the subclass says why, the message says what to do."""


class NotLoggedIn(Refused):
    """No valid session or token came with the request (or it expired)."""


class WrongCredentials(Refused):
    """A login with an unknown email or a wrong password (the two are not told apart)."""


class Forbidden(Refused):
    """The team may not do this (e.g. evaluate an image outside its registry namespace)."""


class NotFound(Refused):
    """The thing does not exist, or belongs to another team (ids do not leak what others have)."""


class Conflict(Refused):
    """The request clashes with the current state (one active job per team, a job already ended)."""


class Invalid(Refused):
    """The request is well-formed JSON but a value in it is not acceptable (a tag, a digest)."""


class TooManyAttempts(Refused):
    """Too many failed logins; ``retry_after`` (seconds), when known, is sent as ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(TooManyAttempts):
    """A submission over the team's quota; ``retry_after`` says when the next one is allowed (if ever)."""


class Overloaded(Refused):
    """The server cannot take this request now (its password-checking pool is full); ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(Refused):
    """The server cannot store anything now (its data directory is read-only or full)."""


__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "NotLoggedIn",
    "Overloaded",
    "QuotaExceeded",
    "Refused",
    "TooManyAttempts",
    "Unavailable",
    "WrongCredentials",
]
