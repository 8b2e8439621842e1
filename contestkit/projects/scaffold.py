"""Create an agent project from one of the shipped templates (``contestkit new``).

A contestant's first ten minutes decide whether they stay, so a new project must build,
evaluate and learn before they change a line. This module only copies a template directory and
fills in two values (the image name and the registry); everything that makes the project work
lives in the template itself, where it can be read and tested like any other project.

Rules kept here:

* NAME becomes the directory name *and* the image repository name, so it must be a valid Docker
  repository path component; a bad name is refused with the rule it broke, before anything is
  written (a project whose image cannot be tagged is a trap that springs at ``build`` time).
* An existing directory is never overwritten, not even an empty one: the directory is claimed
  with an exclusive ``mkdir`` and only a directory this call created is ever removed again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from contestkit import __version__
from contestkit.containers.imageref import MAX_REPOSITORY_LENGTH, validate_name, validate_registry
from contestkit.errors import ContestkitError, NotFoundError, UsageError
from contestkit.suggest import did_you_mean

#: Template choice on the command line -> directory under the templates root.
TEMPLATES: dict[str, str] = {
    "pytorch": "agent-pytorch",
    "tf": "agent-tf",
    "random": "agent-random",
}
#: Directories laid under a template first: the PPO templates share everything but the network
#: code (their ``agent/framework.py``, ``model.py`` and ``ppo.py``), so that part lives once.
TEMPLATE_LAYERS: dict[str, tuple[str, ...]] = {"pytorch": ("ppo-common",), "tf": ("ppo-common",)}
#: Other spellings people type.
TEMPLATE_ALIASES: dict[str, str] = {"torch": "pytorch", "tensorflow": "tf", "keras": "tf", "cpu": "random"}
DEFAULT_TEMPLATE = "pytorch"

# Build and run leftovers of a template's own test runs that must not be copied into projects.
_IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".ruff_cache", "out", "results", "tmp", "*.egg-info"
)


@dataclass(frozen=True)
class NewProject:
    """What :func:`create_project` made (an agent project as found later is a
    :class:`contestkit.projects.project.Project`)."""

    name: str
    template: str
    path: Path
    registry: str | None
    git_commit: str | None = None  # the first commit, when git exists here

    @property
    def image(self) -> str:
        """The image reference ``contestkit build`` will tag (registry filled in later if unset)."""
        return f"{self.registry}/{self.name}" if self.registry else self.name


def templates_root() -> Path:
    """Where the templates are: inside the installed package first, else the source checkout.

    A pip-installed contestkit ships them as package data (``contestkit/templates``); a
    development checkout keeps them at the repository root (``templates/``).
    """
    package_dir = Path(__file__).resolve().parent.parent / "templates"
    repo_dir = Path(__file__).resolve().parent.parent.parent / "templates"
    for candidate in (package_dir, repo_dir):
        if candidate.is_dir() and any((candidate / d).is_dir() for d in TEMPLATES.values()):
            return candidate
    raise NotFoundError(
        f"the agent templates are missing (looked in {package_dir} and {repo_dir}); "
        "reinstall contestkit with `pip install --force-reinstall contestkit`."
    )


def resolve_template(template: str) -> str:
    """The canonical template name for what the user typed (``torch`` -> ``pytorch``)."""
    key = template.strip().lower()
    key = TEMPLATE_ALIASES.get(key, key)
    if key not in TEMPLATES:
        hint = did_you_mean(key, [*TEMPLATES, *TEMPLATE_ALIASES], n=1)
        raise UsageError(f"unknown template {template!r}: choose one of {', '.join(TEMPLATES)}.{hint}")
    return key


def template_dir(template: str) -> Path:
    """The directory holding one template."""
    path = templates_root() / TEMPLATES[resolve_template(template)]
    if not path.is_dir():
        raise NotFoundError(f"template {template!r} is missing from {path.parent}; reinstall contestkit.")
    return path


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def substitutions(name: str, registry: str | None, template: str) -> dict[str, str]:
    """The ``{{key}}`` placeholders templates may use, and their values."""
    return {
        "name": name,
        # A YAML scalar: quoted string, or null when there is none (images are tagged NAME:TAG).
        "registry_yaml": json.dumps(registry) if registry else "null",
        "registry": registry or "<registry>",
        "image": f"{registry}/{name}" if registry else name,
        "template": template,
        "contestkit_version": __version__,
    }


def create_project(
    name: str,
    template: str = DEFAULT_TEMPLATE,
    registry: str | None = None,
    directory: str | Path | None = None,
) -> NewProject:
    """Create ``directory/name`` (default: ``./name``) from a template; returns what was made.

    Refuses an invalid name or registry, and a target that exists in any form, before writing
    anything. On a failure half-way the partly written directory (which this call created) is
    removed, so a retry starts clean.
    """
    validate_name(name, "invalid project name")
    template = resolve_template(template)
    if registry is not None:
        registry = validate_registry(registry)
        if len(f"{registry}/{name}") > MAX_REPOSITORY_LENGTH:
            raise UsageError(
                f"invalid project name: {registry}/{name} is longer than Docker's "
                f"{MAX_REPOSITORY_LENGTH} characters for a repository; choose a shorter name."
            )
    source = template_dir(template)
    parent = Path(directory) if directory is not None else Path.cwd()
    target = parent / name
    if target.exists() or target.is_symlink():
        kind = "directory" if target.is_dir() else "file"
        raise UsageError(
            f"{target} already exists ({kind}); contestkit never overwrites it: "
            "choose another NAME, or another parent with --dir PATH."
        )
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{parent} is not a directory; give --dir a directory to create the project in.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        target.mkdir()  # exclusive: fails if someone created it since the check above
    except FileExistsError:
        raise UsageError(
            f"{target} already exists; contestkit never overwrites it: choose another NAME or --dir."
        ) from None
    except OSError as exc:
        raise ContestkitError(f"cannot create {target}: {exc.strerror}; check the path and its permissions.") from None

    values = substitutions(name, registry, template)
    try:
        for layer in TEMPLATE_LAYERS.get(resolve_template(template), ()):
            shutil.copytree(source.parent / layer, target, ignore=_IGNORED, dirs_exist_ok=True, symlinks=False)
        shutil.copytree(source, target, ignore=_IGNORED, dirs_exist_ok=True, symlinks=False)
        for path in sorted(target.rglob("*")):
            if not path.is_file():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary (a shipped checkpoint): copied as is
            rendered = _render(text, values)
            if rendered != text:
                path.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise ContestkitError(
            f"cannot write the project into {target}: {exc}; check free space and permissions."
        ) from None
    return NewProject(name=name, template=template, path=target, registry=registry, git_commit=init_git(target))


#: Who the first commit is by when git has no identity configured (a fresh machine, a container).
FALLBACK_AUTHOR = ("contestkit new", "contestkit-new@localhost")


def init_git(path: Path) -> str | None:
    """``git init`` and a first commit of the new project, as ``cargo new`` does, so that every
    build is tagged with its commit (``build``'s default tag) and every result traced to it.

    Returns the commit, or ``None`` where git is missing, fails, or ``path`` already lies inside
    another repository (the project is then that repository's to commit). The project is kept
    either way: git is a convenience here, not a requirement."""
    if shutil.which("git") is None:
        return None

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=60)

    try:
        if git("rev-parse", "--is-inside-work-tree").returncode == 0:
            return None
        if git("init", "-q").returncode != 0 or git("add", "-A").returncode != 0:
            return None
        identity: list[str] = []
        if not git("config", "user.email").stdout.strip():
            identity = ["-c", f"user.name={FALLBACK_AUTHOR[0]}", "-c", f"user.email={FALLBACK_AUTHOR[1]}"]
        message = f"contestkit new {path.name} (contestkit {__version__})"
        if git(*identity, "commit", "-q", "--no-verify", "--no-gpg-sign", "-m", message).returncode != 0:
            return None
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() if head.returncode == 0 else None
