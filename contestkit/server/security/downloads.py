"""Sending a file the server opened (a result file an agent may have named) as an HTTP attachment.

Why a response class of its own rather than Starlette's ``StreamingResponse`` or ``FileResponse``:

- ``FileResponse`` opens a *path*, and the results API must send the descriptor it opened without
  following links (``results_api.open_result``); reopening by name would undo that check.
- A ``StreamingResponse`` over a generator closes the file only when the generator is finalised: a
  client that hangs up mid-download left one descriptor open per request (30 of 30 in a probe), and
  enough of those stop the server from opening files or sockets. ``DescriptorResponse`` closes its
  descriptor in a ``finally`` whatever happens: sent, aborted, cancelled, or a failed ``send``.

``content_disposition`` writes the header per RFC 6266 with RFC 5987's ``filename*``, so every name
an agent can write (``uü名.txt``) downloads under its own name; an ASCII ``filename`` is the fallback
for old clients. Before, a non-Latin-1 name was a 500 that also left the file open.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from starlette.responses import Response

CHUNK = 1 << 16


def ascii_fallback(name: str) -> str:
    """The name with anything that is not printable ASCII, or a quote or backslash, as ``_``."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name) or "download"


def content_disposition(name: str) -> str:
    """``attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>`` for any file name."""
    encoded = quote(name.encode("utf-8", "surrogateescape"), safe="")
    return f"attachment; filename=\"{ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"


class DescriptorResponse(Response):
    """Sends the open file ``fd`` (owned from here on: always closed, sent or not) as an attachment."""

    media_type = "application/octet-stream"

    def __init__(
        self, fd: int, *, filename: str, media_type: str, headers: dict[str, str] | None = None, status_code: int = 200
    ) -> None:  # ``status_code``: FastAPI reads its default for the OpenAPI description
        self.fd = fd
        try:
            size = os.fstat(fd).st_size
            extra = {"Content-Disposition": content_disposition(filename), "Content-Length": str(size)}
            super().__init__(None, status_code, {**(headers or {}), **extra}, media_type)
        except BaseException:
            os.close(fd)
            raise

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    await self._send_file(scope, send)
                    group.cancel_scope.cancel()

                async def watch() -> None:  # a client that hangs up ends the download at once
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        finally:
            os.close(self.fd)

    async def _send_file(self, scope: dict[str, Any], send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope.get("method") != "HEAD":
            while chunk := await anyio.to_thread.run_sync(os.read, self.fd, CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
