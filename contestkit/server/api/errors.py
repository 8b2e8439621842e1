"""The API's answers to what went wrong: the HTTP status of each refusal, and the ``{"detail"}`` body.

Why here: the library raises refusals by what went wrong (``contestkit.server.errors``) and never
speaks HTTP; this module alone turns them into statuses, for the API's JSON answers and the pages'
HTML answers alike, so a status is changed in one place.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError

from contestkit.errors import ContestkitError
from contestkit.server.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotLoggedIn,
    Overloaded,
    QuotaExceeded,
    Refused,
    TooManyAttempts,
    Unavailable,
    WrongCredentials,
)

log = logging.getLogger("contestkit.server")

# The one place where what went wrong becomes an HTTP status.
STATUS_OF: dict[type[Refused], int] = {
    NotLoggedIn: 401,
    WrongCredentials: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    TooManyAttempts: 429,
    QuotaExceeded: 429,
    Overloaded: 503,
    Unavailable: 503,
}
UNAVAILABLE = 503  # the database or the data directory refuses writes (read-only, full, down)
MISCONFIGURED = 503  # any other ContestkitError: the server's own setup is wrong, not the request
INVALID_REQUEST = 422  # a body or path that does not fit the request's shape (FastAPI's validation)


def status_of(exc: Refused) -> int:
    """The HTTP status of a refusal (the API's and the pages' answers alike)."""
    return next(code for kind, code in STATUS_OF.items() if isinstance(exc, kind))


def sendable(detail: str) -> str:
    """An error sentence that can be sent as UTF-8 even when it quotes undecodable input."""
    return detail.encode("utf-8", "backslashreplace").decode("utf-8")


def retry_after(exc: BaseException) -> int | None:
    """The seconds a throttled or overloaded request must wait (sent as ``Retry-After``), if known."""
    if isinstance(exc, (TooManyAttempts, Overloaded)):
        return exc.retry_after
    return None


def error_answer(exc: Exception) -> JSONResponse:
    """The API's answer to a refusal or a failure: its status, ``{"detail": sentence}`` and headers."""
    headers: dict[str, str] = {}
    if isinstance(exc, RequestValidationError):
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
        status, detail = INVALID_REQUEST, "Invalid request (" + "; ".join(problems) + ")."
    elif isinstance(exc, Refused):
        status = status_of(exc)
        detail = str(exc)
        if isinstance(exc, NotLoggedIn):
            headers["WWW-Authenticate"] = "Bearer"
        wait = retry_after(exc)
        if wait is not None:
            headers["Retry-After"] = str(wait)
    elif isinstance(exc, DataError):
        # A backstop for text the request models let through that the database cannot hold.
        status, detail = INVALID_REQUEST, "The request holds text the database cannot store (a NUL?); remove it."
    elif isinstance(exc, (OperationalError, OSError)):
        log.error("the database or data directory refused a write: %s", exc)
        status, detail = (
            UNAVAILABLE,
            (
                "The contest server cannot store anything right now (its data directory is read-only or full, or "
                "its database is down); try again in a few minutes."
            ),
        )
    else:
        log.error("request failed: %s", exc)
        status, detail = MISCONFIGURED, f"The contest server is misconfigured: {exc}"
    return JSONResponse({"detail": sendable(detail)}, status_code=status, headers=headers or None)


def install(app: FastAPI) -> None:
    """Answer every refusal and failure of ``app`` with ``error_answer``."""

    async def answer(_request: Request, exc: Exception) -> JSONResponse:
        return error_answer(exc)

    for kind in (Refused, ContestkitError, RequestValidationError, DataError, OperationalError, OSError):
        app.add_exception_handler(kind, answer)
