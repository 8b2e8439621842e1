"""Whether this Python can run an agent locally, and the one command that fixes it when not.

A new project's first ``contestkit eval --runtime local`` must not end in a ``ModuleNotFoundError``
traceback after the env has started: ``contestkit new`` compares the template's pinned
requirements with what is installed, and the local runtime follows the agent's module-level
imports (through the project's own modules) before anything starts. Both answer with the exact
install command, the CPU build of PyTorch included (a plain ``pip install torch`` pulls a
multi-GB CUDA build).
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path

from contestkit.errors import UsageError

REQUIREMENTS_FILE = "requirements.txt"

#: Distributions whose wheels for this use come from another index: PyTorch's CPU-only build.
CPU_INDEX: dict[str, str] = {"torch": "https://download.pytorch.org/whl/cpu"}
#: Distribution name -> the top-level module it provides, where the two differ.
IMPORT_NAME: dict[str, str] = {"tensorflow-cpu": "tensorflow", "tensorflow": "tensorflow", "pyyaml": "yaml"}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class Requirement:
    """One line of a requirements file: the distribution's name and the line as written (``torch==2.13.0``)."""

    name: str
    line: str

    @property
    def module(self) -> str:
        """The top-level module the distribution provides (what an agent imports)."""
        key = _normalize(self.name)
        return IMPORT_NAME.get(key, key.replace("-", "_"))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements a pip requirements file names (``-r`` includes followed, options skipped)."""
    found: list[Requirement] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            found += read_requirements(path.parent / line.split(None, 1)[1])
            continue
        match = _NAME.match(line)
        if line and not line.startswith(("#", "-")) and match:
            found.append(Requirement(match.group(1), line))
    return found


def missing_requirements(requirements: list[Requirement]) -> list[Requirement]:
    """The requirements no distribution installed in this Python provides (versions are not compared)."""
    missing = []
    for req in requirements:
        try:
            importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
    return missing


def install_argvs(requirements: list[Requirement], *, cpu_index: bool = True) -> list[list[str]]:
    """The pip runs that install ``requirements`` into this Python, CPU-only builds from their index.

    The CPU index is an *extra* index, not a replacement: torch's own dependencies (filelock,
    sympy...) come from the user's usual index, and ``torch==2.13.0`` still resolves to the CPU
    build (``2.13.0+cpu`` sorts above ``2.13.0``). ``cpu_index=False`` (the CPU index cannot be
    reached: a machine with only PyPI, a corporate mirror) leaves it out rather than have pip retry
    an unreachable host for every package."""
    pip = [sys.executable, "-m", "pip", "install"]
    special = [r for r in requirements if _normalize(r.name) in CPU_INDEX]
    plain = [r.line for r in requirements if r not in special]
    argvs = [
        [*pip, r.line, *(("--extra-index-url", CPU_INDEX[_normalize(r.name)]) if cpu_index else ())] for r in special
    ]
    return argvs + ([[*pip, *plain]] if plain else [])


def cpu_indexes(requirements: list[Requirement]) -> list[str]:
    """The CPU-build indexes ``requirements`` would use (none when they name no such distribution)."""
    return sorted({CPU_INDEX[_normalize(r.name)] for r in requirements if _normalize(r.name) in CPU_INDEX})


def index_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a package index answers at all (any HTTP status counts; no answer does not)."""
    import requests

    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def install_command(requirements: list[Requirement]) -> str:
    """:func:`install_argvs` as one shell line to paste (``pip`` when the one on PATH is this Python's)."""
    on_path = shutil.which("pip")
    short = bool(on_path) and Path(on_path).parent == Path(sys.executable).parent  # type: ignore[arg-type]
    lines = []
    for argv in install_argvs(requirements):
        words = ["pip", *argv[3:]] if short else argv
        lines.append(" ".join(shlex.quote(w) for w in words))
    return " && ".join(lines)


# -- the imports of an agent ----------------------------------------------------------------------


def _guarded(node: ast.Try) -> bool:
    """A ``try`` whose handler catches a failed import: what it imports is optional."""
    for handler in node.handlers:
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        for name in names:
            if name is None or (isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError",
                                                                            "Exception", "BaseException")):  # fmt: skip
                return True
    return False


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that surely run when the module is imported: not in functions, classes, guarded
    ``try``s or ``if``s (one branch of an ``if`` may well be the one that never runs here)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.Try) and not _guarded(node):
            pending += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.With):
            pending += node.body
    return found


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None  # the agent's own error message will say it better


def _local_file(dotted: str, roots: list[Path]) -> Path | None:
    """The file of a module that lives in the agent's own directories (not an installed package)."""
    for root in roots:
        base = root.joinpath(*dotted.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _find_top_level(top: str, path: list[str]):  # type: ignore[no-untyped-def]
    """The spec of a top-level module on ``path``, or from a meta-path finder that is not a path.

    ``PathFinder`` alone misses packages an editable install maps with a finder of its own
    (setuptools' ``__editable__`` finders: ``pip install -e .`` of contestkit itself, whose
    ``gym_remote`` the contest's agents import), so those finders are asked too.
    """
    spec = PathFinder.find_spec(top, path)
    for finder in sys.meta_path:
        if spec is not None:
            break
        if finder is PathFinder or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec(top, None)
        except (ImportError, ValueError, TypeError):
            spec = None
    return spec


def _installed(top: str, roots: list[Path]) -> bool:
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return True
    cwd = os.getcwd()
    path = [str(r) for r in roots] + [p for p in sys.path if p not in ("", cwd)]
    return _find_top_level(top, path) is not None


def unresolved_imports(start: Path, roots: list[Path]) -> list[str]:
    """Top-level modules that ``start`` imports (directly, or through modules under ``roots``) and
    that this Python cannot find. Only module-level imports count: a lazy or guarded import may
    well be optional."""
    missing: list[str] = []
    seen: set[Path] = set()
    queue = [start]
    while queue:
        path = queue.pop(0).resolve()
        if path in seen:
            continue
        seen.add(path)
        tree = _parse(path)
        if tree is None:
            continue
        package = path.parent
        for node in _module_level_imports(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.parent
                names = [node.module or ""] if node.module else [alias.name for alias in node.names]
                for name in names:
                    local = _local_file(name, [base]) if name else None
                    if local:
                        queue.append(local)
                continue
            dotted = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if isinstance(node, ast.ImportFrom):  # from pkg import submodule
                dotted += [f"{node.module}.{alias.name}" for alias in node.names]
            for name in dotted:
                parts = name.split(".")
                locals_ = [_local_file(".".join(parts[: i + 1]), roots) for i in range(len(parts))]
                if locals_[0] is not None:
                    queue += [f for f in locals_ if f is not None]
                elif name == dotted[0] and not _installed(parts[0], roots) and parts[0] not in missing:
                    missing.append(parts[0])
    return missing


def _defines(tree: ast.Module, name: str) -> bool:
    """Whether a module binds ``name`` at its top level (or might: ``import *``, ``__getattr__``)."""
    for node in ast.walk(tree):
        defined = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if defined and node.name in (name, "__getattr__"):  # type: ignore[union-attr]
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" or (alias.asname or alias.name).split(".")[0] == name for alias in node.names):
                return True
        if isinstance(node, (ast.Name,)) and isinstance(node.ctx, ast.Store) and node.id == name:
            return True
    return False


def agent_start_file(agent: str, root: Path) -> Path:
    """The file that starts an agent given as ``PATH.py`` or ``MODULE:FUNC``; a wrong name is a usage error.

    ``MODULE`` is looked up as the agent process will: the project (or current) directory first,
    then this Python's packages.
    """
    if ":" not in agent or agent.endswith(".py") or Path(agent).exists():
        return Path(agent)
    module, _, func = agent.partition(":")
    local = _local_file(module, [root])
    origin = str(local) if local else None
    if origin is None:
        try:
            spec = _find_top_level(module.split(".")[0], [str(root), *sys.path]) if module else None
            if spec is not None and "." in module:
                import importlib.util

                spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise UsageError(
                f"--agent {agent}: no module {module or '(empty)'} in {root} or this Python's packages; "
                "check the name, or pass the agent as PATH.py."
            )
        origin = spec.origin
    if not func or not func.isidentifier():
        raise UsageError(f"--agent {agent}: after the colon comes a function name, e.g. {module}:main.")
    tree = _parse(Path(origin)) if origin and origin.endswith(".py") else None
    if tree is not None and not _defines(tree, func):
        raise UsageError(f"--agent {agent}: {origin} defines no {func}; name the function that runs the agent.")
    return Path(origin) if origin else Path(agent)


def check_agent_imports(agent: str, project_dir: Path | None) -> None:
    """Refuse, in one sentence with the install command, an agent whose imports this Python lacks."""
    root = Path(project_dir) if project_dir is not None else Path.cwd()
    start = agent_start_file(agent, root)
    roots = [root] if start.parent.resolve() == root.resolve() else [start.parent, root]
    if not start.is_file():
        return
    missing = unresolved_imports(start, roots)
    if not missing:
        return
    wanted = {req.module: req for req in read_requirements(root / REQUIREMENTS_FILE)}
    listed = [wanted[m] for m in missing if m in wanted]
    if listed and len(listed) == len(missing):
        fix = f"run `{install_command(listed)}`"
    else:
        fix = f"install {'them' if len(missing) > 1 else 'it'} into this Python ({sys.executable})"
    names = " and ".join(missing)
    raise UsageError(
        f"The agent imports {names}, which this Python cannot find: {fix}, then eval again "
        "(or evaluate its image with --runtime docker)."
    )
