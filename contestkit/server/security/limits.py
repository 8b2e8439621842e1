"""What a request may be: its size, the text in it, and where a cookie-authenticated change comes from.

Why one ASGI middleware in front of everything: a limit must hold before FastAPI reads a body (a
100 MB login body was read whole), and the same cookie rule must hold for every route that changes
something, pages included, so that no new route can forget it.

- Bodies: at most ``MAX_BODY`` bytes (64 KiB: the largest JSON the API takes is a login or a token
  request of a few hundred bytes). A ``Content-Length`` over it is refused with 413 before one byte is
  read; a chunked body is counted as it streams and refused when it passes the cap.
- Headers: at most ``MAX_HEADERS`` bytes in all (16 KiB), else 431. (uvicorn's own parser bounds a
  single header line; this bounds the sum.)
- Origins (CSRF): a request that changes something (not GET, HEAD, OPTIONS) and is authenticated by
  the session cookie, not by ``Authorization``, is refused (403) when the browser says it comes from
  another origin: ``Sec-Fetch-Site`` other than ``same-origin``/``none`` (current browsers), or,
  without it, an ``Origin`` whose scheme, host and port are neither the request's ``Host`` nor
  ``server_url`` (the same host on another port is another origin, and ``SameSite=Lax`` cookies do
  not stop it). Clients that send neither header (the 2018
  ``retro_contest`` client, scripts, curl) are not browsers and are not refused.
- Text: ``control_characters`` is the one rule for text fields that are stored or looked up (no NUL,
  which PostgreSQL cannot store, nor other control characters); the API's request models use it.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

MAX_BODY = 64 * 1024
MAX_HEADERS = 16 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def control_characters(text: str) -> bool:
    """Whether ``text`` holds NUL or another control character (C0, DEL, C1), tab and newline included."""
    return _CONTROL.search(text) is not None


def refuse_control_characters(value: str | None) -> str | None:
    """A pydantic validator: text with control characters is a 422 that says so, on every database."""
    if value is not None and control_characters(value):
        raise ValueError("contains a control character (such as NUL); remove it")
    return value


class _BodyTooLarge(HTTPException):
    """Raised while a streamed body is read; an HTTPException so that FastAPI's body parsing passes it
    on as the 413 it is, instead of turning it into "error parsing the body"."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is over {limit // 1024} KiB; the API takes less.")


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _own_origins(headers: list[tuple[bytes, bytes]], scope: dict[str, Any], public_url: str | None) -> set[str]:
    """This server's origins: as the request reached it (Host), and its configured public URL."""
    origins = set()
    host = _header(headers, b"host")
    if host:
        origins.add(f"{scope.get('scheme', 'http')}://{host.lower()}")
    if public_url:
        parts = urlsplit(public_url)
        origins.add(f"{parts.scheme}://{parts.netloc.lower()}")
    return origins


def foreign_origin(headers: list[tuple[bytes, bytes]], scope: dict[str, Any], public_url: str | None) -> bool:
    """Whether a browser says this request comes from a page of another origin."""
    site = _header(headers, b"sec-fetch-site")
    if site is not None:  # set by the browser, not by a page's script: it decides alone (proxies rewrite Host)
        return site.lower() not in ("same-origin", "none")
    origin = _header(headers, b"origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin.lower())
    netloc = parts.netloc
    # Origin omits the default port; Host may carry it.
    default = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    own = _own_origins(headers, scope, public_url)
    return not ({f"{parts.scheme}://{netloc}", f"{parts.scheme}://{netloc}{default}"} & own)


class RequestLimits:
    """ASGI middleware: the size caps and the cookie-origin rule above."""

    def __init__(
        self,
        app: Any,
        *,
        session_cookie: str,
        public_url: str | None = None,
        max_body: int = MAX_BODY,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        self.app = app
        self.session_cookie = session_cookie.encode("ascii")
        self.public_url = public_url
        self.max_body = max_body
        self.max_headers = max_headers

    def _cookie_authenticated(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if _header(headers, b"authorization"):
            return False
        cookies = b";".join(value for key, value in headers if key == b"cookie")
        return any(part.strip().startswith(self.session_cookie + b"=") for part in cookies.split(b";"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(k) + len(v) + 4 for k, v in headers) > self.max_headers:
            await _answer(send, 431, f"The request's headers are over {self.max_headers // 1024} KiB; send fewer.")
            return
        length = _header(headers, b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > self.max_body):
            await _answer(send, 413, f"The request body is over {self.max_body // 1024} KiB; the API takes less.")
            return
        if (
            scope.get("method", "GET") not in SAFE_METHODS
            and self._cookie_authenticated(headers)
            and foreign_origin(headers, scope, self.public_url)
        ):
            await _answer(
                send,
                403,
                "This request came from a page of another site or port with your login cookie and was refused "
                "(cross-site request forgery protection); use the contest server's own pages or an API token.",
            )
            return
        received = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _BodyTooLarge(self.max_body)
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge as exc:
            if started:
                raise
            await _answer(send, 413, str(exc.detail))
