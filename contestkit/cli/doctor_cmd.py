"""``contestkit doctor [--json]``: one line per check, with what to do about each problem."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from contestkit.cli.output import console, print_json
from contestkit.errors import EXIT_FAILURE

_MARKS = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "skip": "[dim]skip[/]"}


def doctor(
    json_out: bool = typer.Option(False, "--json", help="Print the checks as one JSON document on stdout."),
    project_dir: Path = typer.Option(None, "--dir", "-C", help="Agent project to check (default: current directory)."),
) -> None:
    """Check the Docker engine, GPU runtime, images, ROMs, config and registry login."""
    from contestkit.doctor import failed, run_checks

    results = run_checks(project_dir)
    bad = failed(results)
    if json_out:
        print_json({"ok": not bad, "checks": [r.to_json() for r in results]})
    else:
        for result in results:
            console.print(
                f"{_MARKS.get(result.status, result.status)} [bold]{escape(result.name)}[/]: {escape(result.summary)}"
            )
            if result.fix and result.status in ("warn", "fail"):
                console.print(f"       [dim]->[/] {escape(result.fix)}")
        if bad:
            console.print("[red]Some checks failed; fix them as shown above.[/]")
    if bad:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Attach ``contestkit doctor``."""
    app.command("doctor")(doctor)
