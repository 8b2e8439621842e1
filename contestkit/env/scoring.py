"""The contest's score: a level's mean episode reward, then the mean over levels.

From the contest rules: "calculate the average reward per episode [on each level]. If you then
average these together, you get your overall score" (10, 20, 30 and 40, 50 give 32.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def level_score(episode_rewards: Sequence[float]) -> float | None:
    """Mean reward of the finished episodes; None when no episode finished (nothing to score)."""
    if not episode_rewards:
        return None
    return float(sum(episode_rewards)) / len(episode_rewards)


def contest_score(level_scores: Iterable[float | None]) -> float | None:
    """Mean of the levels' scores. A level with no finished episode counts as 0, as on the server,

    where a level that produced nothing could not lift the mean; None only when there are no levels.
    """
    scores = [0.0 if s is None else float(s) for s in level_scores]
    if not scores:
        return None
    return sum(scores) / len(scores)


def score_text(score: float) -> str:
    """A score as every page, chart and table shows it: one decimal, thousands separated (165.7)."""
    return f"{score:,.1f}"


def plural(count: int, noun: str) -> str:
    """``1 level``, ``2 levels``: no "1 levels" in any sentence."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
