"""The seed a job attempt is evaluated with: the one rule for drawing it and for each level's seed.

Why: the sticky frame skip is random. A server that evaluates every job with the same seed lets
teams tune their agent to one deterministic sequence of frame skips, and two runs of the same job
score identically, which the 2018 contest's did not. So each job *attempt* draws a fresh seed when
it first starts, unless the host fixed one in server.yaml (``seed: N``), and the seed is recorded
with the job (its document, each level's document and summary.json) so that a result can be
reproduced with ``contestkit eval --seed``.

The seed belongs to the attempt, not to each start of it: an attempt resumed after a server
restart re-runs its interrupted level with the same seed, so a server failure never gives a team a
second draw, and one number describes every level of an attempt. ``jobs restart`` starts a new
attempt and draws again.
"""

from __future__ import annotations

from contestkit.env.seeds import SEED_RANGE, draw_seed, level_seed

__all__ = ["SEED_RANGE", "draw_attempt_seed", "level_seed"]


def draw_attempt_seed(fixed: int | None) -> int:
    """The seed of a new job attempt: the host's fixed ``seed`` from server.yaml, else a fresh one
    (the rule itself is :mod:`contestkit.env.seeds`', shared with ``contestkit eval``)."""
    return draw_seed(fixed)
