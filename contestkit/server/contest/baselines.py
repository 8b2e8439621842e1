"""The host's baselines: teams (by email, ``baselines`` in server.yaml) whose entries are marked as such.

Why a module of its own: the leaderboard, the final's ranking (its board, page and CLI) and the
export all mark baselines by this one rule, and the leaderboard and the final import each other's
rankings otherwise.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contestkit.server.config import ServerConfig
from contestkit.server.storage.db import Team


def emails(config: ServerConfig) -> set[str]:
    """The baseline teams' emails, as the database stores emails (lower case)."""
    return {email.strip().lower() for email in config.baselines}


def mark(db: Session, config: ServerConfig, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Set ``baseline: true`` on the rows (by team ``name``) of baseline teams; returns the rows."""
    wanted = emails(config)
    if wanted:
        by_name = {name: email for name, email in db.execute(select(Team.name, Team.email))}
        for row in rows:
            if by_name.get(row["name"]) in wanted:
                row["baseline"] = True
    return rows
