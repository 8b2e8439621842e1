"""An agent project: a directory holding ``contestkit.yaml`` (and usually a Dockerfile and agent.py).

Commands that act on "the agent" (``build``, ``push``, ``eval`` without ``--image``) find the
project by walking up from the current directory, like git finds its repository, so they work
from any subdirectory. The project's settings are the effective configuration
(:mod:`contestkit.projects.config`) with the project file in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contestkit.containers.imageref import DEFAULT_TAG, sanitize_name, validate_name, validate_registry
from contestkit.errors import ContestkitError, UsageError
from contestkit.projects.config import PROJECT_FILE, Config, find_project_file, load_config


@dataclass(frozen=True)
class Project:
    """A located agent project and its effective configuration."""

    root: Path
    config_file: Path
    config: Config

    @property
    def name(self) -> str:
        """Image name: ``name`` from the config, else the directory name made Docker-safe."""
        configured = self.config.name
        if configured:
            return configured
        return sanitize_name(self.root.name)

    @property
    def registry(self) -> str | None:
        """Registry host/namespace (``None`` until the user chooses one)."""
        return self.config.registry or None

    @property
    def dockerfile(self) -> Path:
        """The project's Dockerfile."""
        return self.root / self.config.dockerfile

    @property
    def entry(self) -> str:
        """The agent entry point (script path relative to the project, or MODULE:FUNC)."""
        return self.config.entry

    def image_ref(self, tag: str = DEFAULT_TAG) -> str:
        """``<registry>/<name>:<tag>`` when a registry is set, else ``<name>:<tag>``."""
        base = f"{self.registry.rstrip('/')}/{self.name}" if self.registry else self.name
        return f"{base}:{tag}"


def find_project(start: Path | str | None = None) -> Project | None:
    """The project containing ``start`` (default: cwd), or ``None`` outside any project."""
    config_file = find_project_file(start)
    if config_file is None:
        return None
    config = load_config(config_file.parent)
    project = Project(config_file.parent, config_file, config)
    try:
        if config.name:
            validate_name(config.name, f"{config_file} ({config.sources['name']})")
        if config.registry:
            try:
                validate_registry(config.registry)
            except UsageError as exc:  # say where the bad value came from: the file or the environment
                raise UsageError(f"{config.sources['registry']}: {exc}") from None
    except UsageError as exc:  # a broken project file is the project's problem (exit 1), as before
        raise ContestkitError(str(exc)) from None
    return project


def require_project(start: Path | str | None = None) -> Project:
    """Like :func:`find_project`, but outside a project raise an error saying what to do."""
    project = find_project(start)
    if project is None:
        where = Path(start or Path.cwd()).resolve()
        raise UsageError(  # run where it cannot run: a usage error (exit 2)
            f"No {PROJECT_FILE} in {where} or its parents: cd into an agent project, or create one "
            "with `contestkit new NAME`."
        )
    return project


def load_project(start: Path | str | None = None) -> Project:
    """The project containing ``start``; the name the eval runtime uses (same as :func:`require_project`)."""
    return require_project(start)
