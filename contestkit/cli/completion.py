"""Shell completion (``contestkit --install-completion``): games, their states, and templates.

Completion runs on every Tab, so it must answer fast and never fail: the contest games come first
(what nearly everyone evaluates), then the emulator's other games; an error yields no candidates.
"""

from __future__ import annotations

import contextlib

import typer


def complete_game(incomplete: str) -> list[str]:
    """Contest games first, then every other game the emulator package knows."""
    from contestkit.env.games import CONTEST_GAMES, all_games

    others: list[str] = []
    with contextlib.suppress(Exception):  # no emulator package: the contest names still complete
        others = [g for g in all_games() if g not in CONTEST_GAMES]
    low = incomplete.lower()
    return [g for g in (*CONTEST_GAMES, *others) if g.lower().startswith(low)]


def complete_state(ctx: typer.Context, incomplete: str) -> list[str]:
    """The states of the game already typed."""
    from contestkit.env.games import states_of

    game = ctx.params.get("game")
    if not game:
        return []
    try:
        states = states_of(game)
    except Exception:  # an unknown game: nothing to offer (eval itself will say why)
        return []
    return [s for s in states if s.startswith(incomplete)]


def complete_template(incomplete: str) -> list[str]:
    """The agent templates of ``contestkit new``."""
    from contestkit.projects.scaffold import TEMPLATES

    return [t for t in TEMPLATES if t.startswith(incomplete.lower())]
