"""``contestkit build``: build the agent project's image, tagged for the team's registry.

What the image gets, and why:

* Tags ``<registry>/<name>:<tag>`` (what ``push``/``submit`` send) and ``<name>:latest`` (what
  ``eval --runtime docker`` runs by default). With no registry configured yet the first tag is
  ``<name>:<tag>``; the registry is asked for at push time, not needed to try an agent locally.
* Labels: the toolkit version, the git commit and whether the tree was dirty, so a result or a
  leaderboard entry can always be traced back to the exact code (and a dirty build recognised).
* ``.dockerignore`` is honoured: the Docker SDK applies it when given the project directory.
* Toolkit base images named by the Dockerfile's ``FROM`` (``contestkit/agent:cpu``...) are built
  first if missing or stale (:func:`contestkit.containers.images.ensure_image`), so a fresh machine needs no
  separate ``images build`` step.

Rebuild speed comes from the Dockerfile layout (the templates put the agent code in the last
layer, after dependencies), not from anything here: Docker's layer cache does the rest.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contestkit import __version__
from contestkit.containers import imageref
from contestkit.containers.images import (
    LABEL_VERSION,
    BuildEvent,
    EventCallback,
    _client,
    ensure_image,
    is_toolkit_image,
    stream_build,
)
from contestkit.errors import ContestkitError
from contestkit.projects.project import Project

if TYPE_CHECKING:
    from docker import APIClient

LABEL_PROJECT = "org.contestkit.projects.project"
LABEL_COMMIT = "org.contestkit.git-commit"
LABEL_DIRTY = "org.contestkit.git-dirty"


@dataclass(frozen=True)
class GitState:
    """The project's git commit (``None`` outside git or before the first commit) and dirtiness."""

    commit: str | None
    short: str | None
    dirty: bool | None


@dataclass
class BuildResult:
    """What ``contestkit build`` made."""

    image_id: str
    tags: list[str]
    labels: dict[str, str]
    seconds: float
    registry: str | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """JSON form for ``--json``."""
        return {
            "id": self.image_id,
            "tags": self.tags,
            "labels": self.labels,
            "seconds": round(self.seconds, 2),
            "registry": self.registry,
        }


def git_state(root: Path) -> GitState:
    """Commit and dirty flag of the git work tree holding ``root`` (only ``root``'s files count)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return GitState(None, None, None)
    status = git("status", "--porcelain", "--untracked-files=normal", "--", ".")
    short = git("rev-parse", "--short", "HEAD") or commit[:7]
    return GitState(commit, short, bool(status) if status is not None else None)


def default_tag(root: Path) -> str:
    """The project's git short sha (``1a2b3c4-dirty`` with uncommitted changes, so that a dirty
    build never carries a clean commit's name), or ``latest`` outside git."""
    return commit_tag(git_state(root)) or imageref.DEFAULT_TAG


def commit_tag(git: GitState) -> str | None:
    """The tag of an untagged build: the short sha, ``-dirty`` when the tree has changes."""
    if not git.short:
        return None
    return f"{git.short}-dirty" if git.dirty else git.short


_ARG_RE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?\s*$", re.IGNORECASE)
_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def dockerfile_args(text: str) -> set[str]:
    """Names of every ``ARG`` the Dockerfile declares."""
    return {m[1] for line in text.splitlines() if (m := _ARG_RE.match(line))}


def arg_default(text: str, name: str) -> str:
    """The default an ``ARG name=...`` line gives (empty when it gives none)."""
    for line in text.splitlines():
        m = _ARG_RE.match(line)
        if m and m[1] == name:
            return (m[2] or "").strip().strip('"').strip("'")
    return ""


def build_args(text: str, config: Any) -> dict[str, str]:
    """The build args for a Dockerfile: the configured ones, plus ``BASE_IMAGE`` where it matters.

    A base image someone chose (``base_image`` in a config file or the environment) wins; else
    the Dockerfile's own ``ARG BASE_IMAGE=...`` default does, so a PyTorch project whose
    contestkit.yaml lost its base_image line still builds on agent:pytorch, not agent:cpu.
    """
    args = dict(config.build_args)
    if "BASE_IMAGE" in dockerfile_args(text) and "BASE_IMAGE" not in args:
        if config.is_set("base_image") or not arg_default(text, "BASE_IMAGE"):
            args["BASE_IMAGE"] = config.base_image
    return args


def base_images(text: str, buildargs: dict[str, str]) -> list[str]:
    """The images a Dockerfile's ``FROM`` lines name, after ``ARG`` substitution (stages excluded)."""
    values: dict[str, str] = {}
    stages: set[str] = set()
    refs: list[str] = []
    seen_from = False
    # join continuation lines
    logical = re.sub(r"\\\s*\n", " ", text)
    for line in logical.splitlines():
        arg = _ARG_RE.match(line)
        if arg and not seen_from:
            default = (arg[2] or "").strip().strip('"').strip("'")
            values[arg[1]] = buildargs.get(arg[1], default)
            continue
        match = _FROM_RE.match(line)
        if not match:
            continue
        seen_from = True

        def sub(m: re.Match[str]) -> str:
            name = m[1] or m[3]
            return values.get(name) or (m[2] or "")

        ref = _VAR_RE.sub(sub, match[1])
        if ref.lower() not in stages and ref != "scratch":
            refs.append(ref)
        if match[2]:
            stages.add(match[2].lower())
    return refs


def build_project(
    project: Project,
    tag: str | None = None,
    *,
    no_cache: bool = False,
    on_event: EventCallback | None = None,
    api: APIClient | None = None,
) -> BuildResult:
    """Build ``project``'s image; see the module docstring for tags and labels.

    Raises :class:`ContestkitError` for a missing Dockerfile or a bad tag, and
    :class:`contestkit.containers.images.BuildFailed` (naming the failing step, with its output) when a step
    fails.
    """

    def emit(event: BuildEvent) -> None:
        if on_event:
            on_event(event)

    started = time.monotonic()
    config = project.config
    dockerfile = project.dockerfile
    if not dockerfile.is_file():
        raise ContestkitError(
            f"{dockerfile} does not exist: create it (e.g. `FROM {config.base_image}` and "
            f"`ADD {project.entry} /root/compo/agent.py`) or set dockerfile in {project.config_file.name}."
        )
    try:
        dockerfile_rel = dockerfile.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        raise ContestkitError(f"{dockerfile} must be inside the project directory {project.root}.") from None
    git = git_state(project.root)
    tag = imageref.validate_tag(tag or commit_tag(git) or imageref.DEFAULT_TAG)
    name = project.name
    primary = project.image_ref(tag)
    tags = [primary]
    if f"{name}:latest" not in tags:
        tags.append(f"{name}:latest")
    if project.registry and f"{name}:{tag}" not in tags:
        tags.insert(1, f"{name}:{tag}")
    notes = []
    if not project.registry:
        notes.append(f"no registry configured: tagged {primary}; `contestkit push` retags it for your team registry")

    text = dockerfile.read_text(encoding="utf-8", errors="replace")
    buildargs = build_args(text, config)
    # Few labels on purpose: the classic builder adds one step (an image commit) per label, and
    # these steps run on every rebuild since the commit changes.
    labels = {LABEL_VERSION: __version__, LABEL_PROJECT: name}
    if git.commit:
        labels[LABEL_COMMIT] = git.commit
        labels[LABEL_DIRTY] = "true" if git.dirty else "false"

    with _client(api) as client:
        for ref in base_images(text, buildargs):
            if is_toolkit_image(ref) and ref.startswith("contestkit/"):
                ensure_image(ref, on_event, api=client, config=config)
        emit(BuildEvent("info", primary, f"building {primary} from {dockerfile_rel}"))
        image_id = stream_build(
            client,
            primary,
            on_event,
            path=str(project.root),
            dockerfile=dockerfile_rel,
            tag=primary,
            buildargs=buildargs,
            labels=labels,
            nocache=no_cache,
            rm=True,
            forcerm=True,
            pull=False,
        )
        image_id = client.inspect_image(primary)["Id"]  # full sha256:..., whatever the stream said
        for ref in tags[1:]:
            client.tag(image_id, *imageref.split(ref))
    seconds = time.monotonic() - started
    emit(BuildEvent("done", primary, f"{', '.join(tags)} built in {seconds:.1f}s"))
    return BuildResult(image_id, tags, labels, seconds, project.registry, notes)
