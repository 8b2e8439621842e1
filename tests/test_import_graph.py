"""The ``contestkit`` package's import graph has no cycle, function-level imports counted.

Why: an import inside a function is how a cycle between two modules gets hidden (each module loads,
but neither can be read, tested or moved without the other). Such imports are fine for heavy
third-party modules (loaded lazily to keep the CLI fast) and for ``contestkit`` modules that do not
lead back; the test follows every ``import`` statement anywhere in a module (in functions, methods,
``try`` blocks...) between ``contestkit`` modules, and fails naming the cycle it finds.

Not counted: imports under ``if TYPE_CHECKING:``. They never run; they let a module name another's
type in an annotation (``phases`` annotates with ``config.ServerConfig``, which imports ``phases``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import contestkit

ROOT = Path(contestkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The ``contestkit`` module ``name`` is, or is inside (``a.b.func`` -> ``a.b``); None outside."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking_only(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except the body of ``if TYPE_CHECKING:`` blocks (their ``else`` is kept)."""
    found: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if _type_checking_only(node):
            pending.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``contestkit`` modules ``module`` imports, wherever in it the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_resolve(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from package import module`` imports that module; ``from module import name`` the module.
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in modules else _resolve(base, modules))
        found.update(t for t in targets if t is not None and t != module)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_contestkit_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path: Path):
    package = tmp_path / "contestkit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from contestkit import b\n")
    (package / "b.py").write_text("def late():\n    from contestkit.a import thing\n")
    modules = {_module_name_in(tmp_path, p): p for p in sorted(package.rglob("*.py"))}
    graph = {module: imports_of(module, path, modules) for module, path in modules.items()}
    assert find_cycle(graph) == ["contestkit.a", "contestkit.b", "contestkit.a"]


def test_type_checking_imports_are_not_edges_but_function_level_ones_are(tmp_path: Path):
    package = tmp_path / "contestkit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from contestkit import b\n")
    (package / "b.py").write_text("class C:\n    def m(self):\n        import contestkit.a\n")
    modules = {_module_name_in(tmp_path, p): p for p in sorted(package.rglob("*.py"))}
    assert imports_of("contestkit.a", modules["contestkit.a"], modules) == set()
    assert imports_of("contestkit.b", modules["contestkit.b"], modules) == {"contestkit.a"}


def _module_name_in(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
