"""The contest as everyone sees it: its name, description, rules, phase and leaderboard levels.

``GET /rest/contest`` (public, ``api/contest.py``) is what the contest page (``/``) and ``contestkit
leaderboard`` show above the board, so that the page, the CLI and ``/host`` say the same thing about
the phase.

The description and the rules are the host's Markdown, rendered with raw HTML off and only safe link
schemes (markdown-it's defaults), and then autoescaped nowhere else: the page inserts this HTML as is.
"""

from __future__ import annotations

import logging
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.orm import Session

from contestkit.server.config import ServerConfig
from contestkit.server.contest import phases
from contestkit.server.storage.db import Database

DEFAULT_NAME = "Retro contest"

# "js-default": CommonMark without raw HTML; markdown-it refuses javascript:, vbscript:, file: and
# most data: links by itself (validateLink).
_MARKDOWN = MarkdownIt("js-default")


def render_markdown(text: str | None) -> Markup | None:
    """The host's Markdown as HTML safe to insert in a page (raw HTML is shown as text)."""
    if not text or not text.strip():
        return None
    return Markup(_MARKDOWN.render(text))  # noqa: S704 - markdown-it escapes all text; raw HTML is off


def overview(db: Session, config: ServerConfig, at: float) -> dict[str, Any]:
    """``/rest/contest``: name, description and rules (Markdown source), the phase, the leaderboard's levels.

    Never the final's levels: their names stay on the server until the results are published."""
    document: dict[str, Any] = {
        "name": (config.name or DEFAULT_NAME).strip(),
        "phase": phases.current_phase(db, config, at).document(),
        "levels": [lv.task for lv in phases.levels_of(config, phases.PhaseKind.LEADERBOARD)],
        "ranking": phases.contest_plan(config).ranking.value,
    }
    for key in ("description", "rules", "rules_url"):
        if getattr(config, key):
            document[key] = getattr(config, key)
    return document


def announce(database: Database, config: ServerConfig, log: logging.Logger, at: float) -> None:
    """At start, in the server's log: the phase in one line, and what in the plan looks like a mistake."""
    with database.session() as db:
        log.info("Contest phase: %s", phases.current_phase(db, config, at, host=True).line)
    for warning in phases.plan_warnings(config, at):
        log.warning("%s", warning)
