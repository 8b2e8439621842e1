"""What an evaluation evaluates: the image (and its digest) or the code (and its git commit).

Why: an RL entrant changes, trains and evaluates a hundred times; a score that cannot be traced
to the code that made it, or an old image evaluated in place of the code just changed, wastes
hours. So every evaluation names its source on its first line and in ``summary.json``, and
:func:`stale_files` says when the project's files that go into the image (per
``.dockerignore``) are newer than the image's last build.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contestkit.runtime.base import Runtime

#: How many changed files the stale-image sentence names before "and N more".
SHOWN_FILES = 5


@dataclass(frozen=True)
class Source:
    """The code a result comes from: an image (id, registry digest, the commit it was built from)
    or a local agent (the file or module, and its project's git commit)."""

    runtime: Runtime
    image: str | None = None
    image_id: str | None = None
    repo_digest: str | None = None
    agent: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``source`` object of ``summary.json``."""
        return asdict(self)

    def describe(self) -> str:
        """One line: ``docker: image my-agent:latest (sha256:0123456789ab), commit 1a2b3c4-dirty``."""
        commit = ""
        if self.git_commit:
            commit = f", commit {self.git_commit[:7]}{'-dirty' if self.git_dirty else ''}"
        if self.runtime is Runtime.LOCAL:
            return f"local processes: agent {self.agent}{commit}"
        digest = self.repo_digest or self.image_id
        shown = f" ({digest.split('@')[-1][:19]})" if digest else ""
        return f"{self.runtime}: image {self.image}{shown}{commit}"


def _git(root: Path) -> tuple[str | None, bool | None]:
    from contestkit.containers.build import git_state

    state = git_state(root)
    return state.commit, state.dirty


def local_source(agent: str, project_dir: Path | None) -> Source:
    """A local agent: the project's git commit, or the commit of the agent script's directory."""
    where = project_dir
    if where is None and ":" not in agent:
        where = Path(agent).resolve().parent
    commit, dirty = _git(where) if where is not None and where.is_dir() else (None, None)
    return Source(runtime=Runtime.LOCAL, agent=agent, git_commit=commit, git_dirty=dirty)


def image_source(runtime: Runtime, image: str, attrs: dict[str, Any] | None) -> Source:
    """An image as ``docker image inspect`` describes it (``attrs``; ``None`` when not inspected)."""
    from contestkit.containers.build import LABEL_COMMIT, LABEL_DIRTY
    from contestkit.containers.images import image_labels

    labels = image_labels(attrs)
    digests = (attrs or {}).get("RepoDigests") or []
    dirty = labels.get(LABEL_DIRTY)
    return Source(
        runtime=runtime,
        image=image,
        image_id=(attrs or {}).get("Id"),
        repo_digest=digests[0] if digests else None,
        git_commit=labels.get(LABEL_COMMIT),
        git_dirty=None if dirty is None else dirty == "true",
    )


def inspect(image: str) -> dict[str, Any] | None:
    """``docker image inspect IMAGE``, or ``None`` when it is absent or no engine answers."""
    from contestkit.containers.images import _client, inspect_image
    from contestkit.errors import ContestkitError

    try:
        with _client(None) as api:
            return inspect_image(api, image)
    except ContestkitError:
        return None


def _docker_time(text: str | None) -> float | None:
    """Seconds since the epoch of a Docker timestamp (nanoseconds and all); ``None`` for Docker's zero."""
    if not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    try:
        when = _dt.datetime.fromisoformat(head).replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    return when.timestamp() + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def built_at(attrs: dict[str, Any]) -> float | None:
    """When the image was last built: the later of its creation and its last tagging (a rebuild
    that Docker's layer cache answers keeps the old creation time but tags anew)."""
    times = [_docker_time(attrs.get("Created")), _docker_time((attrs.get("Metadata") or {}).get("LastTagTime"))]
    known = [t for t in times if t is not None]
    return max(known) if known else None


def context_files(root: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """The files of ``root`` that go into an image built from it, as ``.dockerignore`` decides
    (Docker's own matcher, from the Docker SDK), relative to ``root``."""
    from docker.utils.build import exclude_paths

    ignore = root / ".dockerignore"
    patterns: list[str] = []
    if ignore.is_file():
        lines = ignore.read_text(encoding="utf-8", errors="replace").splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return sorted(p for p in exclude_paths(str(root), patterns, dockerfile) if (root / p).is_file())


def stale_files(root: Path, attrs: dict[str, Any], dockerfile: str = "Dockerfile") -> list[str]:
    """The image's files that changed in ``root`` since the image's last build (empty when
    its build time is unknown)."""
    since = built_at(attrs)
    if since is None:
        return []
    changed = []
    for rel in context_files(root, dockerfile):
        try:
            if os.stat(root / rel).st_mtime > since:
                changed.append(rel)
        except OSError:
            continue
    return changed


def name_files(files: list[str]) -> str:
    """``a, b and 3 more``: the changed files in one short phrase."""
    shown = ", ".join(files[:SHOWN_FILES])
    return shown + (f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES else "")
