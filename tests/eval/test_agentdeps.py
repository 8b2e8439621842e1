"""Which imports of an agent must resolve before a local eval starts (contestkit.projects.agentdeps).

Real files in a temporary project, resolved against this Python's real packages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contestkit.errors import UsageError
from contestkit.projects.agentdeps import agent_start_file, read_requirements, unresolved_imports


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_imports_are_followed_through_the_projects_own_modules(tmp_path: Path) -> None:
    _write(tmp_path, {
        "agent/__init__.py": "",
        "agent/main.py": "import os\nimport numpy\nfrom agent.model import Net\nfrom . import util\n",
        "agent/model.py": "import ck_missing_model_dep\nclass Net: ...\n",
        "agent/util.py": "from ck_missing_util_dep import thing\n",
    })  # fmt: skip
    missing = unresolved_imports(tmp_path / "agent" / "main.py", [tmp_path])
    assert missing == ["ck_missing_model_dep", "ck_missing_util_dep"]


def test_optional_imports_are_not_required(tmp_path: Path) -> None:
    _write(tmp_path, {"agent.py": (
        "try:\n    import ck_opt_a\nexcept ImportError:\n    ck_opt_a = None\n"
        "if False:\n    import ck_opt_b\n"
        "def run():\n    import ck_opt_c\n"
        "import ck_needed\n"
    )})  # fmt: skip
    assert unresolved_imports(tmp_path / "agent.py", [tmp_path]) == ["ck_needed"]


def test_module_function_is_checked_without_importing(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/run.py": "import ck_never_imported\ndef main():\n    pass\n"})
    assert agent_start_file("pkg.run:main", tmp_path) == tmp_path / "pkg" / "run.py"
    with pytest.raises(UsageError, match="defines no start"):
        agent_start_file("pkg.run:start", tmp_path)
    with pytest.raises(UsageError, match="no module pkg.nope"):
        agent_start_file("pkg.nope:main", tmp_path)


def test_requirements_follow_includes_and_skip_options(tmp_path: Path) -> None:
    _write(tmp_path, {
        "requirements.txt": "# pinned\nnumpy==2.4.6\n--index-url https://example.org\ntensorflow-cpu==2.21.0  # cpu\n",
        "requirements-dev.txt": "-r requirements.txt\npytest==9.0.3\n",
    })  # fmt: skip
    reqs = read_requirements(tmp_path / "requirements-dev.txt")
    assert [r.line for r in reqs] == ["numpy==2.4.6", "tensorflow-cpu==2.21.0", "pytest==9.0.3"]
    assert [r.module for r in reqs] == ["numpy", "tensorflow", "pytest"]


def test_a_package_only_a_meta_path_finder_knows_counts_as_installed(tmp_path: Path, monkeypatch) -> None:
    """``pip install -e .`` maps contestkit's own ``gym_remote`` through setuptools' editable finder
    (a ``sys.meta_path`` entry, not a ``sys.path`` folder); the check missed it, so the README's first
    command failed in a fresh venv ("The agent imports gym_remote, which this Python cannot find").
    A finder of the same kind stands in for setuptools' here: a real editable install takes a venv."""
    import importlib.machinery
    import sys

    package = tmp_path / "elsewhere" / "ck_editable_only"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")

    class EditableFinder:
        @staticmethod
        def find_spec(name: str, path: object = None, target: object = None):  # type: ignore[no-untyped-def]
            if name != "ck_editable_only":
                return None
            return importlib.machinery.PathFinder.find_spec(name, [str(package.parent)])

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, EditableFinder()])
    agent = tmp_path / "agent.py"
    agent.write_text("import ck_editable_only\nimport ck_really_missing_module\n")
    assert unresolved_imports(agent, [tmp_path]) == ["ck_really_missing_module"]
