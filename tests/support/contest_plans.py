"""Writing a contest's plan (phases, freeze, baselines, the contest page's text) into server.yaml.

Plain helpers for tests that hold an ``OfflineContest`` (tests/server/conftest.py): each rewrites
server.yaml and reloads the configuration, as a host editing the file and restarting would.
"""

from __future__ import annotations

import time
from typing import Any

import yaml
from sqlalchemy import select

from contestkit.server.config import load_config
from contestkit.server.contest import hosting
from contestkit.server.contest.teams import add_team
from contestkit.server.queue import operations
from contestkit.server.storage.db import Job, Team, Worker

FINAL_LEVELS = [("Fake", "SecretLevel1"), ("Fake", "SecretLevel2")]
PASSWORD = "a long password"


def configure(contest: Any, **settings: Any) -> None:
    """Set top-level keys of server.yaml and reload ``contest.config``."""
    path = contest.data_dir / "server.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(settings)
    path.write_text(yaml.safe_dump(document))
    contest.config = load_config(contest.data_dir)


def with_final(contest: Any, **leaderboard: Any) -> None:
    """A final phase on ``FINAL_LEVELS`` (and ``leaderboard``'s settings for the leaderboard phase)."""
    (contest.data_dir / "final-levels.csv").write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in FINAL_LEVELS))
    phases: dict[str, Any] = {"final": {"levels": "final-levels.csv"}}
    if leaderboard:
        phases["leaderboard"] = leaderboard
    configure(contest, phases=phases)


def add(contest: Any, name: str) -> int:
    """Another team; its id."""
    add_team(contest.data_dir, name=name, email=f"{name}@example.org", password=PASSWORD)
    with contest.database.session() as db:
        return int(db.scalar(select(Team.id).where(Team.name == name)))


def finished(contest: Any, team_id: int, score: float, at: float | None = None) -> int:
    """A finished leaderboard job of ``team_id`` (finished at ``at``, default now), its levels scored."""
    job = operations.start_job(contest.database, contest.config, team_id, "v1")
    with contest.database.session() as db:
        row = db.get(Job, job.id)
        row.status, row.score, row.finished_at = "finished", score, time.time() if at is None else at
        for worker in db.query(Worker).filter(Worker.job_id == job.id):
            worker.status, worker.score = "finished", score
    return job.id


def close(contest: Any, at: float | None = None) -> None:
    with contest.database.session() as db:
        hosting.close_submissions(db, contest.config, "cli:host", time.time() if at is None else at)
