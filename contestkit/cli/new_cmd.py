"""``contestkit new NAME``: scaffold an agent project that evaluates and learns out of the box."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from contestkit.cli.output import console
from contestkit.scaffold import DEFAULT_TEMPLATE, TEMPLATES, create_project

_TEMPLATE_HELP = {
    "pytorch": "PPO that learns online (PyTorch), base contestkit/agent:pytorch",
    "tf": "PPO that learns online (TensorFlow 2 / Keras), base contestkit/agent:tensorflow",
    "random": "minimal random agent, base contestkit/agent:cpu",
}


def _shown(path: Path) -> str:
    """The path relative to the current directory when it lies below it (what users cd into)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def register(app: typer.Typer) -> None:
    """Add the ``new`` command to the CLI."""

    @app.command("new")
    def new(
        name: str = typer.Argument(
            ..., help="Project directory and image name: lowercase letters, digits and . _ - (e.g. my-agent)."
        ),
        template: str = typer.Option(
            DEFAULT_TEMPLATE,
            "--template",
            "-t",
            help="Agent template: " + "; ".join(f"{k}: {_TEMPLATE_HELP[k]}" for k in TEMPLATES) + ".",
        ),
        registry: str | None = typer.Option(
            None,
            "--registry",
            help="Registry HOST or HOST/ORG to push to; if omitted, build takes it from the user config or asks.",
        ),
        directory: Path | None = typer.Option(
            None,
            "--dir",
            help="Parent directory in which NAME/ is created (default: the current directory).",
        ),
    ) -> None:
        """Create NAME/ from an agent template, ready to evaluate, build and submit."""
        project = create_project(name, template=template, registry=registry, directory=directory)
        where = escape(_shown(project.path))
        console.print(f"[bold green]Created[/] {where}/ from the [bold]{project.template}[/] template.")
        console.print("Next steps:")
        # soft_wrap: commands must stay one line, whatever the terminal's width, to paste them.
        for line in (
            f"cd {where}",
            "contestkit eval Airstriker-Genesis Level1 --runtime local --timestep-limit 6000",
            f"contestkit build            # image {project.image}:latest",
            "contestkit submit",
        ):
            console.print(f"  {line}", soft_wrap=True)
        if project.registry is None:
            console.print(
                "[dim]No registry set: images are tagged NAME:TAG, and `contestkit push` retags them for "
                "your contest server's team registry; set `registry:` in contestkit.yaml to tag for another.[/]"
            )
