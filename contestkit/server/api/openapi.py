"""The OpenAPI description at ``/openapi.json``, with the error answers the API really gives.

FastAPI describes each route's success and a 422 whose ``detail`` is an array of validation errors.
This API answers every refusal as ``{"detail": "<one sentence>"}`` (``app.error_answer``, the body
limits in ``limits``): a 422 included, so FastAPI's array schema was wrong (10 schema violations in
a fuzz run), and the 401/403/404/409/429/503 answers were not described at all. ``with_error_answers``
replaces FastAPI's 422 and adds those answers to every operation, with one ``ErrorAnswer`` schema;
``.ci/schemathesis.sh`` checks the result against the running server.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA = "ErrorAnswer"

# What each refusal means; any operation may answer it (a session may end, the database may be down).
ERROR_ANSWERS: dict[int, str] = {
    400: "the request is not one this operation takes (another registry service, say)",
    401: "not logged in, or the session or token ended (or wrong credentials)",
    403: "not allowed: the team is disabled, the account is not an admin, or a cross-site request",
    404: "no such job, file, token or team for the caller",
    409: "the request conflicts with the current state (a job already running, a phase not open)",
    413: "the request body is over the server's limit",
    422: "a parameter or body that does not fit the request's shape, or text the server refuses",
    429: "too many attempts or over a quota; Retry-After says when to try again",
    431: "the request's headers are over the server's limit",
    503: "the server cannot serve now (database down, disk full, a part it needs unreachable)",
}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def with_error_answers(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with FastAPI's validation-error shapes replaced by ``ErrorAnswer`` on every operation."""
    schema = copy.deepcopy(schema)
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas[ERROR_SCHEMA] = {
        "type": "object",
        "title": ERROR_SCHEMA,
        "required": ["detail"],
        "properties": {"detail": {"type": "string", "description": "one sentence: what was wrong, what to do"}},
    }
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, meaning in ERROR_ANSWERS.items():
                described = responses.get(str(status), {}).get("description")
                responses[str(status)] = {"description": described or meaning, "content": content}
    return schema


def install(app: FastAPI) -> None:
    """Serve ``with_error_answers`` of FastAPI's own description, built once, at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_answers(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
