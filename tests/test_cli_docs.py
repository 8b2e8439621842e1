"""Every ``contestkit`` command and sub-command has help text and is mentioned in README.md.

A new command that nobody documents fails here, not in a user's hands. The tree is walked as Click
sees it (``typer.main.get_command``), so commands added by any module's ``register(app)`` count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from contestkit.cli import app
from tests.support.paths import REPO


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for every command below ``command``, groups included, depth first."""
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield (*path, name), sub
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_walk_sees_the_command_tree():
    """Guards the two tests below against passing on an empty walk."""
    assert {("eval",), ("server",), ("server", "add-team"), ("jobs", "cancel")} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_has_help_text(path: tuple[str, ...]):
    command = COMMANDS[path]
    text = (command.help or command.short_help or "").strip()
    assert text, f"`contestkit {' '.join(path)}` has no help text: give its function a docstring or help="


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_is_mentioned_in_the_readme(path: tuple[str, ...]):
    """Mentioned = ``contestkit PATH`` appears in README.md (words may wrap onto the next line)."""
    pattern = r"contestkit\s+" + r"\s+".join(map(re.escape, path)) + r"(?![\w-])"
    assert re.search(pattern, README), f"README.md never mentions `contestkit {' '.join(path)}`: add a line about it"
