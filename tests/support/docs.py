"""Helpers for the documentation tests: the repository's paths and the site's build hooks, loaded by path.

The hooks live in ``docs/hooks/`` (MkDocs loads them by path, they are not a package), so the tests load them
the same way instead of copying what they do.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.support.paths import REPO

DOCS = REPO / "docs"


def load_hook(name: str) -> ModuleType:
    """The module ``docs/hooks/NAME.py``, as MkDocs loads it."""
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
