"""docs/architecture.md's "Where things live" names every module of the package, and only modules that exist.

Why: the section is how a newcomer finds the home of a concept; it went stale once (seven server modules missing,
one described by a job it no longer had). A module added, moved or removed without the page fails here.
"""

from __future__ import annotations

import re

from tests.support.docs import DOCS, REPO

PACKAGE = REPO / "contestkit"


def _named() -> set[str]:
    """The backticked paths in the first column of the page's "Where things live" table."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Where things live", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first = line.strip().strip("|").split("|")[0]
            names |= {n for n in re.findall(r"`([^`]+)`", first) if n.endswith((".py", "/"))}
    return names


def _modules() -> set[str]:
    """Every module file of the package (relative to contestkit/), packages as ``DIR/`` instead of ``__init__.py``."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if "templates/" in rel:  # agent project templates: files copied into new projects, not package modules
            continue
        found.add(rel[: -len("__init__.py")] if rel.endswith("__init__.py") else rel)
    found.discard("")  # contestkit/__init__.py itself: the page is about its contents
    return found


def test_the_table_is_read():
    """Guards the two tests below against passing on an empty table."""
    assert {"runs/levelrun.py", "server/app.py", "bridge/protocol.py"} <= _named()


def test_every_module_is_named():
    missing = sorted(_modules() - _named())
    assert not missing, (
        f"docs/architecture.md's 'Where things live' does not name {missing}: add a row saying what each is the home of"
    )


def test_no_module_named_is_gone():
    gone = sorted(name for name in _named() - _modules() if not (PACKAGE / name).exists())
    assert not gone, f"docs/architecture.md names {gone}, which are not in contestkit/: remove or rename them"
