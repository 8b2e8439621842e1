"""The discrete action set: which button combinations the policy chooses between.

Pressing 12 buttons independently gives 4,096 combinations, most of them useless (START, MODE,
UP+DOWN); a small discrete set makes exploration and credit assignment far easier. The Sonic
games get the seven combinations the contest baselines used; every other game gets a generic set
derived from its button names.
"""

from __future__ import annotations

import numpy as np

# The contest baselines' Sonic action set (retro-baselines' SonicDiscretizer).
SONIC_COMBOS: list[list[str]] = [
    ["LEFT"],
    ["RIGHT"],
    ["LEFT", "DOWN"],
    ["RIGHT", "DOWN"],
    ["DOWN"],
    ["DOWN", "B"],
    ["B"],
]

GENESIS_BUTTONS: list[str] = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]

_DIRECTIONS = ("LEFT", "RIGHT", "UP", "DOWN")
# Buttons that open menus or reset the console: never useful during play.
_SYSTEM_BUTTONS = {"MODE", "START", "SELECT", "RESET", ""}


def is_sonic(game: str | None) -> bool:
    """The three contest games share Sonic's controls (and the baselines' action set)."""
    return bool(game) and game.lower().startswith(("sonicthehedgehog", "sonicandknuckles"))


def combos_for(game: str | None, buttons: list[str | None]) -> list[list[str]]:
    """Button combinations, by name, for a game.

    Generic rule: every direction (and no direction) alone and together with the primary action
    button (the first non-direction, non-system button: B on the Genesis), plus the next two action
    buttons alone (A and C). Pressing and releasing the primary button is how most games fire, so
    the policy needs "direction without fire" as well as "direction with fire".
    """
    names = [b or "" for b in buttons]
    if is_sonic(game):
        return [list(c) for c in SONIC_COMBOS]
    directions = [d for d in _DIRECTIONS if d in names]
    action_buttons = [b for b in names if b not in _DIRECTIONS and b.upper() not in _SYSTEM_BUTTONS]
    combos: list[list[str]] = []
    primary = action_buttons[:1]
    for d in [None, *directions]:
        base = [d] if d else []
        combos.append(base)
        if primary:
            combos.append(base + primary)
    for extra in action_buttons[1:3]:
        combos.append([extra])
    return combos


def action_set(game: str | None, buttons: list[str | None] | None) -> np.ndarray:
    """The action set as an array of 0/1 button vectors, shape ``(n_actions, n_buttons)``."""
    names = list(buttons) if buttons else list(GENESIS_BUTTONS)
    table = np.zeros((0, len(names)), dtype=np.uint8)
    rows = []
    for combo in combos_for(game, names):
        row = np.zeros(len(names), dtype=np.uint8)
        for button in combo:
            row[names.index(button)] = 1
        rows.append(row)
    if rows:
        table = np.stack(rows)
    return table
