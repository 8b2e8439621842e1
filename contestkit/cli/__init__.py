"""The `contestkit` command line.

Each command group lives in its own module and registers itself on the one Typer app here; the
modules only parse, call the library and print. Library errors (``ContestkitError``) become one
red sentence and a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.markup import escape

from contestkit import __version__
from contestkit.cli.output import err_console
from contestkit.errors import ContestkitError

app = typer.Typer(
    name="contestkit",
    help="Scaffold, build, evaluate, submit and host retro-game RL contest agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command-group modules; each defines ``register(app)``.
_COMMAND_MODULES = (
    "contestkit.cli.eval_cmd",
    "contestkit.cli.roms_cmd",
    "contestkit.cli.images_cmd",
    "contestkit.cli.build_cmd",
    "contestkit.cli.doctor_cmd",
    "contestkit.cli.new_cmd",
    "contestkit.cli.contest_cmd",
    "contestkit.cli.server_cmd",
    "contestkit.cli.host_cmd",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"contestkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Scaffold, build, evaluate, submit and host retro-game RL contest agents."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: user errors print one sentence, never a traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except ContestkitError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
