"""``HEAD`` wherever ``GET`` works, for every route (API, pages, results): RFC 9110 asks for it, and
link checkers and monitors send it (the probe found ``HEAD /`` answered 405).

FastAPI registers a ``GET`` route for ``GET`` only; rather than declare HEAD on each route, this
middleware runs a HEAD request as the GET it mirrors and sends the same status and headers (so
``Content-Length`` is the GET's) without the body. Where GET is not allowed, the answer is the GET's
405 with its ``Allow`` header.
"""

from __future__ import annotations

from typing import Any


class HeadAsGet:
    """An ASGI middleware: a HEAD request is answered as its GET, with the body dropped."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return
        ended = False

        async def headers_only(message: dict[str, Any]) -> None:
            nonlocal ended
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body" and not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, headers_only)
