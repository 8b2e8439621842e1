"""The JSON documents the API answers with: a job, its workers (levels) and leaderboard rows.

Why a module of their own: these shapes are the 2018 client's contract (it tests ``'score' in job``,
reads ``workers[].task``...), and the same document is also written to each attempt's
``summary.json``. Keeping them apart from the operations and the queue means a change of shape is
made, and reviewed, in one place.
"""

from __future__ import annotations

import json
from typing import Any

from contestkit.server.db import ACTIVE, Job, Worker


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    """The 2018 client tests ``'score' in job``: absent keys, not nulls, mean "not known yet"."""
    return {key: value for key, value in document.items() if value is not None}


def worker_document(worker: Worker) -> dict[str, Any]:
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
        }
    )


def job_document(job: Job) -> dict[str, Any]:
    return _drop_none(
        {
            "id": job.id,
            "status": job.status,
            "score": job.score,
            "error": job.error,
            "tag": job.tag,
            "image": job.image,
            "digest": job.digest,
            "created": job.created_at,
            "started": job.started_at,
            "finished": job.finished_at,
            "attempt": job.attempt,
            "resumes": job.resumes or None,
            "cancel_requested": True if job.cancel_requested and job.status in ACTIVE else None,
            "workers": [worker_document(w) for w in job.workers],
        }
    )


def leaderboard_row(team_name: str, job_id: int, score: float, finished: float | None) -> dict[str, Any]:
    return {"name": team_name, "score": score, "job": job_id, "finished": finished}


def summary_json(document: dict[str, Any]) -> str:
    """A job document as written to ``attempt-<n>/summary.json``."""
    return json.dumps(document, indent=2) + "\n"
