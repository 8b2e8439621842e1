"""``contestkit build [TAG] [--no-cache]``: build the agent project's image with live progress."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from contestkit.cli.images_cmd import BuildRenderer
from contestkit.cli.output import err_console, print_json


def build(
    tag: str = typer.Argument(None, help="Image tag (default: the project's git short sha, else 'latest')."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild every layer, ignoring Docker's cache."),
    project_dir: Path = typer.Option(
        None, "--dir", "-C", help="Agent project directory (default: the one holding the current directory)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every line the build steps print."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Build the agent image of this project, tagged for the team's registry and as NAME:latest."""
    from contestkit.containers.build import build_project
    from contestkit.projects.project import require_project

    project = require_project(project_dir)
    with BuildRenderer(verbose=verbose) as render:
        result = build_project(project, tag, no_cache=no_cache, on_event=render)
    if json_out:
        print_json(result.to_json())
        return
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}")
    err_console.print(
        f"[green]built[/] {escape(', '.join(result.tags))} ({result.image_id[7:19]}) in {result.seconds:.1f}s"
    )
    dirty = result.labels.get("org.contestkit.git-dirty")
    if dirty == "true":
        err_console.print("[yellow]note:[/] the work tree has uncommitted changes (labelled git-dirty=true).")


def register(app: typer.Typer) -> None:
    """Attach ``contestkit build``."""
    app.command("build")(build)
