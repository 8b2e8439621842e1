"""Job and level states, stop reasons and outcomes are written once, in contestkit.states.

An AST scan of the package: a state word ("queued", "failed", "user", ...) written as a string literal
where a state is compared, assigned or passed (``status == "failed"``, ``w["state"] in ("finished", ...)``,
``reason == "user"``, ``status="pending"``) is a second home for the vocabulary, and fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import contestkit
from contestkit import states

PACKAGE = Path(contestkit.__file__).parent

#: The words of the vocabularies the server and the CLI share.
WORDS = {
    member.value
    for vocabulary in (
        states.JobState,
        states.LevelState,
        states.StopReason,
        states.LevelOutcome,
        states.ProgressStatus,
    )
    for member in vocabulary
}

#: Modules allowed to spell the words: the vocabulary's home, and the schema migrations, which record what
#: the database held at their version (a later change to an enum must not rewrite an old migration).
EXEMPT = {PACKAGE / "states.py", PACKAGE / "server" / "storage" / "migrations.py"}

#: Names that say an expression holds a state (``job.status``, ``worker.get("state")``, ``reason``).
STATE_NAMES = ("status", "state", "reason", "outcome")


def _words_in(node: ast.AST) -> list[str]:
    """State words written as literals in ``node`` (a constant, or a tuple/list/set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in WORDS:
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [word for item in node.elts for word in _words_in(item)]
    return []


def _about_state(node: ast.AST) -> bool:
    text = ast.unparse(node).lower()
    return any(name in text for name in STATE_NAMES)


def literal_states(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, code) of every place in ``tree`` that spells a state word where a state is meant."""
    found: list[tuple[int, str]] = []
    # Members of other enums (the bridge's EndReason has an "interrupted") are their own vocabularies.
    members = {
        id(item)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef) and any("Enum" in ast.unparse(base) for base in cls.bases)
        for item in cls.body
    }
    for node in ast.walk(tree):
        if id(node) in members:
            continue
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_about_state(o) for o in operands) and any(_words_in(o) for o in operands):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.keyword) and node.arg in STATE_NAMES and _words_in(node.value):
            found.append((node.value.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None and _words_in(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named = {word.upper() for word in _words_in(node.value)}  # QUEUED = "queued"
            if any(_about_state(t) or any(name in ast.unparse(t).upper() for name in named) for t in targets):
                found.append((node.lineno, ast.unparse(node)))
        elif (
            isinstance(node, ast.IfExp) and _about_state(node.test) and (_words_in(node.body) or _words_in(node.orelse))
        ):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_no_state_word_is_written_outside_the_vocabulary_module() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {code}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in EXEMPT and "templates" not in path.parts
        for line, code in literal_states(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == []


def test_the_scan_finds_what_it_is_meant_to_find() -> None:
    """The scan itself: each form the package used to write (before contestkit.states) is found."""
    before = """
if final.get("status") != "finished": pass
done = sum(1 for w in workers if w["state"] in ("finished", "failed", "cancelled"))
if reason == "user": pass
worker.status = "pending"
Worker(idx=0, status="pending")
prog = Progress(status="starting")
QUEUED, RUNNING = "queued", "running"
"""
    assert sorted(line for line, _ in literal_states(ast.parse(before))) == [2, 3, 4, 5, 6, 7, 8]
    assert literal_states(ast.parse('emit(BuildEvent("done", tag))\nrow = {"finished": job.finished_at}\n')) == []


def test_the_words_stored_and_sent_are_unchanged() -> None:
    """str-valued enums: the database and the JSON keep the words they always held."""
    assert [s.value for s in states.JobState] == ["queued", "running", "finished", "failed", "cancelled", "stalled"]
    assert [s.value for s in states.LevelState] == ["pending", "running", "finished", "failed", "cancelled"]
    assert f"{states.JobState.QUEUED}" == "queued" and states.LevelState.FAILED == "failed"


def test_metrics_outcomes_derive_from_the_states() -> None:
    outcome = states.LevelOutcome.of
    assert outcome(True, None, False) is states.LevelOutcome.FINISHED == states.LevelState.FINISHED
    assert outcome(False, None, False) is states.LevelOutcome.FAILED
    assert outcome(False, states.StopReason.USER, False) is states.LevelOutcome.CANCELLED == states.LevelState.CANCELLED
    assert outcome(False, states.StopReason.SHUTDOWN, False) is states.LevelOutcome.INTERRUPTED
    assert outcome(True, states.StopReason.SHUTDOWN, False) is states.LevelOutcome.FINISHED
    assert outcome(True, None, True) is states.LevelOutcome.OVERRAN
