"""``contestkit images build | list | bootstrap``, and the rich renderer of build progress.

Progress goes to stderr so ``--json`` output on stdout stays one clean document. The renderer
prints one line per Dockerfile step (marked "cached" when Docker reused the layer) and shows the
step's latest output line under a spinner; ``--verbose`` prints every output line instead.
"""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from contestkit.cli.output import console, err_console, print_json
from contestkit.containers.images import IMAGES, BuildEvent
from contestkit.errors import UsageError

images_app = typer.Typer(
    help="Build and list the toolkit's Docker images (agent bases and remote-env).",
    no_args_is_help=True,
)


class BuildRenderer:
    """Turns :class:`BuildEvent` callbacks into readable terminal output (use as a context manager)."""

    def __init__(self, verbose: bool = False, quiet: bool = False) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self._status = None
        self._pending: BuildEvent | None = None
        self._step_started = time.monotonic()

    def __enter__(self) -> BuildRenderer:
        if not self.quiet and err_console.is_terminal:
            self._status = err_console.status("", spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush(cached=False)
        if self._status is not None:
            self._status.stop()

    def _flush(self, cached: bool) -> None:
        event, self._pending = self._pending, None
        if event is None or self.quiet:
            return
        mark = " [dim](cached)[/]" if cached else ""
        instruction = escape(event.message if len(event.message) < 100 else event.message[:97] + "...")
        err_console.print(f"  [bold]{event.step}/{event.total}[/] {instruction}{mark}")

    def __call__(self, event: BuildEvent) -> None:
        if event.kind == "cached":
            self._flush(cached=True)
            return
        if event.kind == "step":
            self._flush(cached=False)
            if event.message.startswith("LABEL org.contestkit."):
                return  # the labels contestkit adds: bookkeeping, not the user's steps
            self._pending = event
            self._step_started = time.monotonic()
            self._update(f"{event.image} step {event.step}/{event.total}: {event.message}")
            return
        if event.kind == "output":
            self._flush(cached=False)
            if self.verbose and not self.quiet:
                err_console.print(f"    [dim]{escape(event.message)}[/]")
            else:
                self._update(f"{event.image}: {event.message}")
            return
        self._flush(cached=False)
        if event.kind == "pull":
            self._update(f"pulling: {event.message}")
        elif event.kind == "info" and not self.quiet:
            err_console.print(f"[cyan]>[/] {escape(event.message)}")
        elif event.kind == "done" and not self.quiet:
            err_console.print(f"[green]✓[/] {escape(event.message)}")
        elif event.kind == "warning":
            err_console.print(f"[yellow]warning:[/] {escape(event.message)}")

    def _update(self, text: str) -> None:
        if self._status is not None:
            text = text.replace("\n", " ")
            self._status.update(escape(text[:120]))


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size else "-"


@images_app.command("build")
def build_cmd(
    names: list[str] = typer.Argument(
        None, help=f"Images to build: {', '.join(IMAGES)} (default: remote-env and cpu, what eval needs)."
    ),
    all_images: bool = typer.Option(False, "--all", help="Build every image, the framework bases included."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rebuild from scratch, ignoring Docker's layer cache."),
    force: bool = typer.Option(False, "--force", help="Rebuild even images that are up to date."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every line the build steps print."),
    json_out: bool = typer.Option(False, "--json", help="Print the built images as JSON on stdout."),
    with_roms: bool = typer.Option(
        False, "--with-roms", help="Also build remote-env:<version>-roms with this machine's ROMs (private; clusters)."
    ),
) -> None:
    """Build the toolkit images (skipping those already up to date)."""
    from contestkit.containers.images import build_images, list_images

    if with_roms:
        from contestkit.containers.rom_image import build_remote_env_with_roms

        if names and names != ["remote-env"]:
            raise UsageError(
                "--with-roms builds the remote-env image: `contestkit images build remote-env --with-roms`."
            )
        with BuildRenderer(verbose=verbose) as render:
            tag, games = build_remote_env_with_roms(on_event=render)
        if json_out:
            print_json({"built": [tag], "games": games})
            return
        err_console.print(f"[green]ready[/] {tag} with the ROMs of {', '.join(games)}")
        err_console.print(
            "[yellow]It holds copyrighted ROMs:[/] push it only to a private registry the cluster pulls from."
        )
        return

    if all_images and names:
        raise UsageError(f"Pass image names ({' '.join(names)}) or --all, not both.")
    selected = list(IMAGES) if all_images else (names or None)
    started = time.monotonic()
    with BuildRenderer(verbose=verbose) as render:
        tags = build_images(selected, render, force=force, nocache=no_cache)
    rows = {row.ref: row for row in list_images()}
    if json_out:
        print_json({"built": [rows[t].to_json() for t in tags if t in rows], "seconds": time.monotonic() - started})
        return
    for tag in tags:
        row = rows.get(tag)
        err_console.print(f"[green]ready[/] {tag}  {_mb(row.size_bytes) if row else ''}")


@images_app.command("list")
def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Show the toolkit images (built or not, up to date or stale) and images built by contestkit."""
    from contestkit.containers.images import list_images

    rows = list_images()
    if json_out:
        print_json({"images": [row.to_json() for row in rows]})
        return
    table = Table(box=None, header_style="bold")
    # Image ids are in --json. Names never wrap; on a narrow terminal CREATED goes first, then the
    # other columns fold rather than being cut to "curre…".
    table.add_column("IMAGE", no_wrap=True)
    for column in ("STATE", "SIZE", "TOOLKIT"):
        table.add_column(column, overflow="fold")
    if console.width >= 100:
        table.add_column("CREATED", no_wrap=True)
    colors = {"current": "green", "stale": "yellow", "missing": "red", "built": "green", "unknown": "yellow"}
    for row in rows:
        state = f"[{colors.get(row.state, 'white')}]{row.state}[/]"
        table.add_row(
            row.ref,
            state,
            _mb(row.size_bytes),
            row.version or "-",
            *([row.created[:16].replace("T", " ") or "-"] if console.width >= 100 else []),
        )
    console.print(table)
    if any(row.state in ("missing", "stale") and row.key in IMAGES for row in rows):
        console.print("[dim]`contestkit images build [NAME...]` builds missing or stale images.[/]")


@images_app.command("bootstrap")
def bootstrap_cmd(
    mirror: str = typer.Option(
        None, "--mirror", help="Debian mirror URL (default: debian_mirror, else debootstrap's)."
    ),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the stand-in image exists."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print debootstrap's output."),
) -> None:
    """Make the Python base image from Debian packages (for machines that reach no image registry)."""
    from contestkit.containers.bootstrap import bootstrap_base_image

    with BuildRenderer(verbose=verbose) as render:
        tag = bootstrap_base_image(render, mirror=mirror, force=force)
    err_console.print(f"[green]ready[/] {tag}: toolkit image builds now start from it.")


def register(app: typer.Typer) -> None:
    """Attach the ``images`` command group."""
    app.add_typer(images_app, name="images")
