"""``contestkit roms list | import PATH``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from contestkit.cli.output import console, print_json
from contestkit.env.roms import import_roms, list_roms
from contestkit.errors import EXIT_FAILURE

roms_app = typer.Typer(help="Contest ROMs: which are present, and importing the ones you own.", no_args_is_help=True)


@roms_app.command("list")
def roms_list(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show the contest games and whether each ROM is imported."""
    statuses = list_roms()
    if json_out:
        print_json([asdict(s) for s in statuses])
        return
    table = Table(title="Contest ROMs", title_justify="left")
    for col in ("game", "ROM", "levels", "where it comes from"):
        table.add_column(col)
    for s in statuses:
        table.add_row(s.game, "[green]present[/]" if s.present else "[red]missing[/]", str(s.levels), s.source)
    console.print(table)
    if not all(s.present for s in statuses):
        console.print(
            "Import the ROMs you own with [bold]contestkit roms import PATH[/] (a file or a folder, zips too)."
        )


@roms_app.command("import")
def roms_import(
    path: Path = typer.Argument(..., help="A ROM file, or a folder (e.g. your Steam library) to search."),
) -> None:
    """Import ROMs by content hash, as the emulator package's importer does."""
    games = import_roms(path)
    if not games:
        console.print(f"No known ROM found under {path}. The Sonic ROMs come from the SEGA Genesis Classics on Steam.")
        raise typer.Exit(EXIT_FAILURE)
    for game in games:
        console.print(f"imported [bold]{game}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(roms_app, name="roms")
