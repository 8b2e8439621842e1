"""The `contestkit` command line.

Each command group lives in its own module and registers itself on the one Typer app here; the
modules only parse, call the library and print. Library errors (``ContestkitError``) become one
red sentence and the exit status of its kind (see :mod:`contestkit.errors`) instead of a traceback.
"""

from __future__ import annotations

import importlib
import sys
import typing

import typer
import typer._adapters as typer_adapters
import typer.core

from contestkit import __version__
from contestkit.cli.output import err_console, shown
from contestkit.errors import EXIT_INTERRUPTED, EXIT_STATUS_RULE, ContestkitError
from contestkit.suggest import did_you_mean


def _value_label(param: typer.core.TyperOption | typer.core.TyperArgument, ctx: object) -> str | None:
    """What a parameter's value looks like in ``--help``: nothing for a flag, the choices for an
    enum (``auto|docker|local``), else a plain word (N, NUMBER, PATH, TEXT) instead of Typer's
    ``<bool>``/``<str>``/``<int range>``; nothing for an argument, whose name column says it. Set
    here once for every command; an option's ``metavar`` wins."""
    if isinstance(param, typer.core.TyperArgument):
        return None  # its name column already says it (GAME, NAME)
    if param.metavar is not None:
        return param.metavar
    if getattr(param, "is_flag", False):
        return None
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        word = "PATH"
    else:
        item = typing.get_args(desc.annotation)[0] if desc.is_list else desc.annotation
        word = {int: "N", float: "NUMBER"}.get(item, "TEXT")  # type: ignore[call-overload]
    return f"{word}..." if desc.is_list else word


def _suggesting(coerce: typing.Callable[..., typing.Any]) -> typing.Callable[..., typing.Any]:
    """Typer's check of a choice option (an enum such as ``--runtime``), with the nearest valid
    value added to its refusal: ``'lcoal' is not one of 'auto', 'docker', 'local'. Did you mean local?``"""

    def coerce_with_hint(value: typing.Any, *, choices: typing.Sequence[typing.Any], **kwargs: typing.Any) -> object:
        try:
            return coerce(value, choices=choices, **kwargs)
        except ValueError as exc:
            names = [str(getattr(c, "value", c)) for c in choices]
            raise ValueError(f"{exc}{did_you_mean(str(value), names, n=1)}") from None

    return coerce_with_hint


# Typer checks every choice option in this one function: wrapped once here, every enum option of
# every command suggests (where this Typer has it; otherwise its plain refusal stands).
if hasattr(typer_adapters, "coerce_cli_choice"):
    typer_adapters.coerce_cli_choice = _suggesting(typer_adapters.coerce_cli_choice)
typer.core.TyperOption.display_type_rich = _value_label  # type: ignore[method-assign,assignment]
typer.core.TyperArgument.display_type_rich = _value_label  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="contestkit",
    help="Scaffold, build, evaluate, submit and host retro-game RL contest agents.",
    epilog=EXIT_STATUS_RULE,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command-group modules; each defines ``register(app)``.
_COMMAND_MODULES = (
    "contestkit.cli.eval_cmd",
    "contestkit.cli.replay_cmd",
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
        app(args=argv, prog_name="contestkit", standalone_mode=True)
    except ContestkitError as exc:
        err_console.print(f"[bold red]error:[/] {shown(exc)}", highlight=False)  # it may quote an agent
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
