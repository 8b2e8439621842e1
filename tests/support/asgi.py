"""One request through an ASGI app in this process, without a server or an HTTP client library, so a
test can watch the statements a request runs."""

from __future__ import annotations

import asyncio
import json as json_module
from typing import Any


def asgi_request(app: Any, method: str, path: str, json: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """-> (status, headers, body); repeated answer headers (set-cookie) are joined by newlines."""
    body = b"" if json is None else json_module.dumps(json).encode()
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw += [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
    if json is not None:
        raw.append((b"content-type", b"application/json"))
    path, _, query = path.partition("?")
    scope = {"type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "headers": raw, "scheme": "http", "server": ("testserver", 80),
             "client": ("127.0.0.1", 1234), "root_path": ""}  # fmt: skip
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer_headers: dict[str, str] = {}
    for key, value in start["headers"]:
        name = key.decode()
        answer_headers[name] = (answer_headers[name] + "\n" if name in answer_headers else "") + value.decode()
    return start["status"], answer_headers, b"".join(m.get("body", b"") for m in sent[1:])
