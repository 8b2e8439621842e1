"""The JSON documents the API answers with: a job, its workers (levels) and leaderboard rows.

Why a module of their own: these shapes are the 2018 client's contract (it tests ``'score' in job``,
reads ``workers[].task``...), and the same document is also written to each attempt's
``summary.json``. Keeping them apart from the operations and the queue means a change of shape is
made, and reviewed, in one place.
"""

from __future__ import annotations

import json
from typing import Any

from contestkit.server.db import ACTIVE, RUNNING, STALLED, Job, Worker, now
from contestkit.server.seeds import level_seed


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    """The 2018 client tests ``'score' in job``: absent keys, not nulls, mean "not known yet"."""
    return {key: value for key, value in document.items() if value is not None}


def worker_document(worker: Worker, attempt_seed: int | None = None) -> dict[str, Any]:
    """A level; ``mean_episode_reward`` is the running mean while it runs (absent: no episode yet)."""
    return _drop_none(
        {
            "task": worker.task,
            "state": worker.status,
            "eta": None if worker.eta is None else round(worker.eta, 1),
            "progress": worker.progress,
            "score": worker.score,
            "error": worker.error,
            "game": worker.game,
            "level": worker.state,
            "timesteps": worker.timesteps,
            "episodes": worker.episodes,
            "mean_episode_reward": worker.mean_episode_reward,
            "seed": None if attempt_seed is None else level_seed(attempt_seed, worker.idx),
        }
    )


def job_document(job: Job, *, stale_after: float | None = None) -> dict[str, Any]:
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
    workers = [worker_document(w, job.seed) for w in job.workers]
    error = job.error
    if stalled:
        error = (
            f"the server running this job has not reported for over {stale_after:.0f} s (it stopped, or its "
            "data directory is read-only or full); the job resumes, its finished levels kept, once it can write again"
        )
        for worker in workers:
            if worker["state"] == RUNNING:
                worker["state"] = STALLED
    return _drop_none(
        {
            "id": job.id,
            "status": STALLED if stalled else job.status,
            "score": job.score,
            "error": error,
            "tag": job.tag,
            "image": job.image,
            "digest": job.digest,
            "created": job.created_at,
            "started": job.started_at,
            "finished": job.finished_at,
            "attempt": job.attempt,
            "resumes": job.resumes or None,
            "seed": job.seed,
            "cancel_requested": True if job.cancel_requested and job.status in ACTIVE else None,
            "workers": workers,
        }
    )


def leaderboard_row(team_name: str, job_id: int, score: float, finished: float | None) -> dict[str, Any]:
    return {"name": team_name, "score": score, "job": job_id, "finished": finished}


def summary_json(document: dict[str, Any]) -> str:
    """A job document as written to ``attempt-<n>/summary.json``."""
    return json.dumps(document, indent=2) + "\n"
