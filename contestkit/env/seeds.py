"""The seed of the sticky frame skip: the one rule for drawing it and for each level's seed.

Why: the sticky frame skip is random, and a run can only be reproduced when its seed is known. So
every evaluation (``contestkit eval`` and each job attempt on the contest server) draws a seed
when none is given and records it (summary.json, remote-status.json, the results table, the
job's documents); ``contestkit eval --seed N`` then replays the env's side exactly: the same
sticky-action draws for the same actions. The levels of one run differ by their index, the same
rule on the client and the server, so ``eval --levels FILE --seed N`` reproduces a job attempt
whose seed was N.
"""

from __future__ import annotations

import secrets

SEED_RANGE = 2**31  # fits the 32-bit seeds emulators and other RNGs take, with room for the level index


def draw_seed(fixed: int | None = None) -> int:
    """``fixed`` when one was given, else a fresh seed."""
    return fixed if fixed is not None else secrets.randbelow(SEED_RANGE)


def level_seed(run_seed: int, index: int) -> int:
    """The seed of level ``index`` (0-based) of a run: levels of one run differ."""
    return run_seed + index
