"""Every ``contestkit`` command has help text, and the generated CLI reference documents every command and option.

The reference page (``docs/cli.md`` on the site) is rendered at build time by ``docs/hooks/cli_reference.py`` from
the Click objects ``contestkit --help`` prints; these tests render it the same way and check it against the same
tree, walked independently here (``typer.main.get_command``, so commands added by any module's ``register(app)``
count). A command or option the renderer skipped, or one without help text, fails here rather than in a user's hands.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main

from contestkit.cli import app
from tests.support.docs import load_hook


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for every command below ``command``, groups included, depth first."""
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield (*path, name), sub
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))
REFERENCE = load_hook("cli_reference").render()


def _section(path: tuple[str, ...]) -> str:
    """The reference's section of one command: from its heading to the next heading."""
    heading = f" `{' '.join(('contestkit', *path))}`\n"
    start = REFERENCE.find(heading)
    assert start != -1, f"the CLI reference has no section for `contestkit {' '.join(path)}`"
    end = REFERENCE.find("\n#", start + len(heading))
    return REFERENCE[start : end if end != -1 else None]


def test_the_walk_sees_the_command_tree():
    """Guards the tests below against passing on an empty walk."""
    assert {("eval",), ("server",), ("server", "add-team"), ("jobs", "cancel")} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_has_help_text(path: tuple[str, ...]):
    command = COMMANDS[path]
    text = (command.help or command.short_help or "").strip()
    assert text, f"`contestkit {' '.join(path)}` has no help text: give its function a docstring or help="


@pytest.mark.parametrize("path", sorted(p for p, c in COMMANDS.items() if not c.hidden), ids=" ".join)
def test_every_command_and_option_is_in_the_reference(path: tuple[str, ...]):
    """Its section shows its usage line, its help text, and every parameter's names with their help."""
    command = COMMANDS[path]
    section = _section(path)
    assert f"Usage: contestkit {' '.join(path)}" in section
    first_line = (command.help or command.short_help or "").strip().splitlines()[0]
    assert first_line in section, f"`contestkit {' '.join(path)}`'s help text is not in its section"
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "option":
            names = param.opts + param.secondary_opts
        else:
            names = [param.metavar or param.name]
        for name in names:
            assert name in section, f"`contestkit {' '.join(path)}`: {name} is not in the CLI reference"
        if param.help:
            assert " ".join(param.help.split())[:40].replace("|", "\\|") in section, (
                f"`contestkit {' '.join(path)}`: the help of {names[0]} is not in the CLI reference"
            )
