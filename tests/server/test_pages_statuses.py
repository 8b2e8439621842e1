"""``pages.py`` writes no HTTP status number: a page that refuses answers with the status that
``api.errors.STATUS_OF`` gives its refusal (as the API would), and other answers name their status
(``starlette.status``). Why a test: a number written in a page drifts from the API's one map."""

from __future__ import annotations

import ast
from pathlib import Path

from contestkit.server.web import pages


def literal_statuses(source: str) -> list[int]:
    """Integer literals in 100..599 used where a status goes: a ``status``/``status_code`` argument or
    default, a comparison, or any argument of a call to ``message``/``page``."""
    found: list[int] = []

    def status_like(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and type(node.value) is int and 100 <= node.value <= 599:
            found.append(node.value)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in ("status", "status_code"):
            status_like(node.value)
        elif isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                status_like(operand)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ("message", "page", "HTMLResponse", "Response", "RedirectResponse"):
                for argument in node.args:
                    status_like(argument)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args
            for arg, default in zip(arguments.args[-len(arguments.defaults) :], arguments.defaults, strict=False):
                if arg.arg in ("status", "status_code"):
                    status_like(default)
            for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
                if arg.arg in ("status", "status_code"):
                    status_like(default)
    return found


def test_pages_write_no_literal_http_status():
    assert literal_statuses(Path(pages.__file__).read_text(encoding="utf-8")) == []


def test_the_check_finds_the_literals_pages_used_to_write():
    before = (
        "def page(request, template, team, status: int = 200): ...\n"
        "def who(exc):\n"
        "    if api.status_of(exc) == 401: return None\n"
        "    message(request, team, 404, 'No such job', 'text')\n"
        "    return Response('not found', status_code=404)\n"
    )
    assert sorted(literal_statuses(before)) == [200, 401, 404, 404]
