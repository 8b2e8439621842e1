"""``contestkit new NAME``: scaffold an agent project that evaluates and learns out of the box."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import typer
from rich.markup import escape

from contestkit.cli.completion import complete_template
from contestkit.cli.output import console
from contestkit.errors import ContestkitError
from contestkit.projects.agentdeps import (
    REQUIREMENTS_FILE,
    cpu_indexes,
    index_reachable,
    install_argvs,
    install_command,
    missing_requirements,
    read_requirements,
)
from contestkit.projects.scaffold import DEFAULT_TEMPLATE, TEMPLATES, create_project

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
            ...,
            metavar="NAME",
            help="Project directory and image name: lowercase letters, digits and . _ - (e.g. my-agent).",
        ),
        template: str = typer.Option(
            DEFAULT_TEMPLATE,
            "--template",
            "-t",
            autocompletion=complete_template,
            help="Agent template: " + "; ".join(f"{k}: {_TEMPLATE_HELP[k]}" for k in TEMPLATES) + ".",
        ),
        registry: str | None = typer.Option(
            None,
            "--registry",
            help="Registry HOST or HOST/ORG that build tags the image for; if omitted, it is tagged NAME:TAG "
            "and `contestkit push` retags it for the contest's team registry.",
        ),
        directory: Path | None = typer.Option(
            None,
            "--dir",
            help="Parent directory in which NAME/ is created (default: the current directory).",
        ),
        install: bool = typer.Option(
            False,
            "--install",
            help="Install what the template's requirements.txt lists and this Python lacks (CPU builds), "
            "so `eval --runtime local` runs at once.",
        ),
    ) -> None:
        """Create NAME/ from an agent template, ready to evaluate, build and submit."""
        project = create_project(name, template=template, registry=registry, directory=directory)
        missing = missing_requirements(read_requirements(project.path / REQUIREMENTS_FILE))
        if missing and install:
            unreachable = [url for url in cpu_indexes(missing) if not index_reachable(url)]
            if unreachable:
                console.print(
                    f"[yellow]note:[/] {escape(', '.join(unreachable))} does not answer from here, so torch comes from "
                    "your usual package index (on Linux, PyPI's torch is the CUDA build: several GB).",
                    soft_wrap=True,
                )
            for argv in install_argvs(missing, cpu_index=not unreachable):
                console.print(f"[dim]$ {escape(shlex.join(argv))}[/]", soft_wrap=True)
                if subprocess.run(argv).returncode != 0:
                    raise ContestkitError(
                        f"pip could not install {', '.join(r.line for r in missing)}; the project is made, "
                        f"install them by hand: {install_command(missing)}"
                    )
            missing = []
        where = escape(_shown(project.path))
        console.print(f"[bold green]Created[/] {where}/ from the [bold]{project.template}[/] template.")
        if project.git_commit:
            console.print(f"[dim]A git repository with a first commit ({project.git_commit[:7]}): "
                          "`contestkit build` tags each image with its commit.[/]")  # fmt: skip
        console.print("Next steps:")
        # soft_wrap: commands must stay one line, whatever the terminal's width, to paste them.
        for line in (
            f"cd {where}",
            "contestkit eval Airstriker-Genesis Level1 --runtime local --timestep-limit 6000",
            f"contestkit build            # image {project.image}:<commit>, and :latest",
            "contestkit submit",
        ):
            console.print(f"  {line}", soft_wrap=True)
        if missing:
            names = " and ".join(r.name for r in missing)
            console.print(
                f"[yellow]note:[/] this Python lacks {escape(names)}, which the agent imports; before "
                "`eval --runtime local`, install it (or pass --install to `contestkit new`):"
            )
            console.print(f"  {escape(install_command(missing))}", soft_wrap=True)
        if project.registry is None:
            console.print(
                "[dim]No registry set: images are tagged NAME:TAG, and `contestkit push` retags them for "
                "your contest server's team registry; set `registry:` in contestkit.yaml to tag for another.[/]"
            )
