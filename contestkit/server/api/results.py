"""A job's result files through the API, for its own team only: ``contestkit jobs logs`` and ``download``.

- ``GET /rest/job/{id}/results[?attempt=N]`` lists the attempt's files (path, size) and its levels;
- ``GET /rest/job/{id}/results/{path}[?attempt=N]`` sends one of them.

Why this is safe although the files are partly written by the team's agent (its ``out/``): the job
is looked up *for the calling team* (``operations.get_job``), so another team's id, or an id no job
has, is the same 404; the path is relative to the attempt's directory, opened one component at a
time without following any symbolic link (``O_NOFOLLOW`` under a directory descriptor), and only a
regular file is sent: a link an agent planted towards another team's results or the server's keys,
``..``, an absolute path or a FIFO are all "not found". Files go out as attachments with
``nosniff``, never rendered by a browser on the API's origin.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from contestkit.server.config import ServerConfig
from contestkit.server.errors import NotFound
from contestkit.server.queue import operations
from contestkit.server.queue.jobqueue import attempt_dir
from contestkit.server.queue.scheduling import level_dir_name
from contestkit.server.security.downloads import DescriptorResponse
from contestkit.server.storage.db import Database

MAX_LISTED = 10_000  # an agent's out/ may hold many files; the listing says when it was cut
TEXT_SUFFIXES = (".txt", ".csv", ".json", ".log")  # shown as text; everything else is bytes


class ResultFile(BaseModel):
    path: str = Field(description="relative to the attempt's directory, '/'-separated")
    size: int


class ResultLevel(BaseModel):
    index: int
    task: str
    dir: str = Field(description="the level's directory among the files")


class ResultsListing(BaseModel):
    job: int
    attempt: int
    levels: list[ResultLevel]
    files: list[ResultFile]
    truncated: bool = False


def _not_found(job_id: int, path: str | None = None) -> NotFound:
    what = f"no result file '{path}'" if path is not None else "no results for that attempt"
    return NotFound(f"Job {job_id} has {what}; `contestkit jobs logs {job_id}` and `jobs download` list what there is.")


def _walk(root: Path) -> tuple[list[ResultFile], bool]:
    """Regular files under ``root``, never following links; at most ``MAX_LISTED``."""
    found: list[ResultFile] = []
    for here, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        base = Path(here)
        for name in sorted(files):
            try:
                info = os.lstat(base / name)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and not name.startswith("."):
                found.append(ResultFile(path=(base / name).relative_to(root).as_posix(), size=info.st_size))
                if len(found) >= MAX_LISTED:
                    return found, True
    return found, False


def open_result(root: Path, relative: str) -> int | None:
    """A read-only descriptor of the regular file ``relative`` under ``root``; None for anything else.

    Each component is opened under its parent's descriptor with ``O_NOFOLLOW``, so no symbolic link
    is followed, whatever was swapped in meanwhile; ``..``, empty and absolute paths are refused.
    """
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in ("", ".", "..") or "\0" in p for p in parts):
        return None
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        os.close(fd)
        return None
    os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        return None
    return leaf


def router(config: ServerConfig, database: Database, caller: Callable[..., Any]) -> APIRouter:
    """The results routes; ``caller`` is the app's dependency for a logged-in team."""
    routes = APIRouter(tags=["jobs"])

    def locate(team_id: int, job_id: int, attempt: int | None) -> tuple[int, Path, list[ResultLevel]]:
        with database.session() as db:
            job = operations.get_job(db, team_id, job_id)  # another team's job is "not found"
            chosen = job.attempt if attempt is None else attempt
            if not 1 <= chosen <= job.attempt:
                raise _not_found(job_id)
            levels = [
                ResultLevel(index=w.idx, task=w.task, dir=level_dir_name(w.idx, w.game, w.state)) for w in job.workers
            ]
        return chosen, attempt_dir(config, job_id, chosen), levels

    @routes.get("/rest/job/{job_id}/results", response_model=ResultsListing)
    def listing(
        job_id: int,
        attempt: int | None = Query(default=None, description="default: the job's latest attempt"),
        who: Any = Depends(caller),
    ) -> ResultsListing:
        """The result files of one of the team's jobs (monitor.csv, logs, summary.json, reward curves)."""
        chosen, root, levels = locate(who.team_id, job_id, attempt)
        files, truncated = _walk(root) if root.is_dir() else ([], False)
        return ResultsListing(job=job_id, attempt=chosen, levels=levels, files=files, truncated=truncated)

    @routes.get(
        "/rest/job/{job_id}/results/{path:path}",
        response_class=DescriptorResponse,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def result_file(
        job_id: int,
        path: str,
        attempt: int | None = Query(default=None, description="default: the job's latest attempt"),
        who: Any = Depends(caller),
    ) -> DescriptorResponse:
        """One result file of one of the team's jobs, as an attachment."""
        _, root, _ = locate(who.team_id, job_id, attempt)
        fd = open_result(root, path)
        if fd is None:
            raise _not_found(job_id, path)
        text = PurePosixPath(path).suffix.lower() in TEXT_SUFFIXES
        kind = "text/plain; charset=utf-8" if text else "application/octet-stream"
        name = PurePosixPath(path).name
        return DescriptorResponse(fd, filename=name, media_type=kind, headers={"X-Content-Type-Options": "nosniff"})

    return routes
