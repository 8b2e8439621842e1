"""The JSON documents the API answers with: a job, its workers (levels) and the leaderboard.

Why a module of their own: these shapes are the 2018 client's contract (it tests ``'score' in job``,
reads ``workers[].task``...), and the same document is also written to each attempt's
``summary.json``. The pydantic models below are the shapes: they make the OpenAPI description, and
``job_status`` builds them, once, for the API, ``summary.json``, the host's listings and the pages
alike, so a change of shape is made, and reviewed, in one place.

Keys whose value is not known are left out, not sent as null (``exclude_none``): the 2018 client
tests ``'score' in job``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from contestkit.server.queue.seeds import level_seed
from contestkit.server.storage.db import ACTIVE, RUNNING, STALLED, Job, Worker, now


class WorkerStatus(BaseModel):
    task: str
    state: str
    eta: float | None = None
    progress: float | None = Field(default=None, description="0..1")
    score: float | None = None
    error: str | None = None
    game: str | None = None
    level: str | None = None
    timesteps: int | None = None
    episodes: int | None = None
    mean_episode_reward: float | None = Field(default=None, description="of the episodes so far (running mean)")
    seed: int | None = Field(default=None, description="the level's seed: the attempt's seed + the level's index")


class JobStatus(BaseModel):
    id: int
    status: str = Field(
        description="queued, running, finished, failed or cancelled; stalled: running, but its server has not "
        "reported for the heartbeat timeout"
    )
    score: float | None = None
    error: str | None = None
    tag: str | None = None
    image: str | None = None
    digest: str | None = None
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    attempt: int | None = None
    resumes: int | None = None
    seed: int | None = Field(default=None, description="the attempt's seed, drawn when it first starts")
    cancel_requested: bool | None = None
    workers: list[WorkerStatus]


class LeaderboardRow(BaseModel):
    name: str
    score: float
    job: int | None = None
    finished: float | None = None
    baseline: bool | None = Field(default=None, description="true: the host's baseline, not a team")


class LeaderboardResponse(BaseModel):
    leaderboard: list[LeaderboardRow]
    start: int = 1
    ranking: str | None = Field(default=None, description="latest or best: which finished job of a team counts")
    level: str | None = Field(default=None, description="GAME/STATE when this is one level's view")
    frozen: float | None = Field(default=None, description="frozen at this UNIX time: later jobs do not count")


def worker_status(worker: Worker, attempt_seed: int | None = None, *, stalled: bool = False) -> WorkerStatus:
    """A level; ``mean_episode_reward`` is the running mean while it runs (absent: no episode yet).
    ``stalled``: its job's server stopped reporting, so a running level is shown ``stalled``."""
    return WorkerStatus(
        task=worker.task,
        state=STALLED if stalled and worker.status == RUNNING else worker.status,
        eta=None if worker.eta is None else round(worker.eta, 1),
        progress=worker.progress,
        score=worker.score,
        error=worker.error,
        game=worker.game,
        level=worker.state,
        timesteps=worker.timesteps,
        episodes=worker.episodes,
        mean_episode_reward=worker.mean_episode_reward,
        seed=None if attempt_seed is None else level_seed(attempt_seed, worker.idx),
    )


def job_status(job: Job, *, stale_after: float | None = None) -> JobStatus:
    """A job; with ``stale_after`` (the heartbeat timeout), a running job whose server has not beaten
    for that long is shown ``stalled``, its running levels too.

    Why at read time: the server that would record the change is the one that cannot (it died, or
    its data directory is read-only or full), so the readers must notice it themselves.
    """
    stalled = (
        stale_after is not None
        and job.status == RUNNING
        and (job.heartbeat_at is None or job.heartbeat_at < now() - stale_after)
    )
    error = job.error
    if stalled:
        error = (
            f"the server running this job has not reported for over {stale_after:.0f} s (it stopped, or its "
            "data directory is read-only or full); the job resumes, its finished levels kept, once it can write again"
        )
    return JobStatus(
        id=job.id,
        status=STALLED if stalled else job.status,
        score=job.score,
        error=error,
        tag=job.tag,
        image=job.image,
        digest=job.digest,
        created=job.created_at,
        started=job.started_at,
        finished=job.finished_at,
        attempt=job.attempt,
        resumes=job.resumes or None,
        seed=job.seed,
        cancel_requested=True if job.cancel_requested and job.status in ACTIVE else None,
        workers=[worker_status(w, job.seed, stalled=stalled) for w in job.workers],
    )


def job_document(job: Job, *, stale_after: float | None = None) -> dict[str, Any]:
    """``job_status`` as a plain dict (for ``summary.json``, the host's listings and the pages' templates)."""
    return job_status(job, stale_after=stale_after).model_dump(exclude_none=True)


def job_json(job: JobStatus) -> bytes:
    """A job's answer as the API sends it."""
    return job.model_dump_json(exclude_none=True).encode("utf-8")


def leaderboard_row(team_name: str, job_id: int, score: float, finished: float | None) -> dict[str, Any]:
    """A leaderboard row's 2018 keys (``leaderboards`` adds what the host's views need)."""
    return {"name": team_name, "score": score, "job": job_id, "finished": finished}


def leaderboard_json(board: dict[str, Any]) -> bytes:
    """The public leaderboard's answer, as ``LeaderboardResponse`` shapes it."""
    return LeaderboardResponse.model_validate(board).model_dump_json(exclude_none=True).encode("utf-8")


def summary_json(document: dict[str, Any]) -> str:
    """A job document as written to ``attempt-<n>/summary.json``."""
    return json.dumps(document, indent=2) + "\n"
