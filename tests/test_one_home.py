"""Shared numbers are written once: the contest's budgets (contestkit.runs.levelrun) and the server's port
(contestkit.server.config.DEFAULT_PORT). An AST scan of the package finds a second spelling."""

from __future__ import annotations

import ast
from pathlib import Path

import contestkit
from contestkit.runs import levelrun
from contestkit.server import config
from contestkit.server.deployment import manifests

PACKAGE = Path(contestkit.__file__).parent


def _numbers(path: Path, values: set[float]) -> list[int]:
    """Lines of ``path`` where one of ``values`` is written as a number literal."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
        and node.value in values
    ]


def test_the_server_port_is_written_once() -> None:
    found = {
        str(path.relative_to(PACKAGE)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if (lines := _numbers(path, {config.DEFAULT_PORT}))
    }
    assert list(found) == ["server/config.py"] and len(found["server/config.py"]) == 1


def test_the_kubernetes_deployment_takes_the_contest_budgets_from_levelrun() -> None:
    path = Path(manifests.__file__)
    assert _numbers(path, {levelrun.TIMESTEP_LIMIT, levelrun.WALLCLOCK_LIMIT}) == []
    options = manifests.DeploymentOptions(registry="r:5000", levels_csv="game,state\n")
    assert (options.timestep_limit, options.wallclock_limit) == (levelrun.TIMESTEP_LIMIT, levelrun.WALLCLOCK_LIMIT)
