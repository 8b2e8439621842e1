""" "Did you mean ...?": the nearest valid names for a mistyped one, the same way everywhere.

Why: a typo (``--runtime lcoal``, ``--template pytroch``, a level name) should cost one glance,
not a trip to ``--help``; every command that checks a name against a list says the nearest ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def nearest(word: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` choices close to ``word`` (case ignored), closest first, then shared prefixes."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.4)
    prefix = [c for c in options if c.lower().startswith(word.lower()[:6])] if len(word) >= 3 else []
    out: list[str] = []
    for c in [lowered[h] for h in hits] + prefix:
        if c not in out:
            out.append(c)
    return out[:n]


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """`` Did you mean a, b?`` (with its leading space), or ``""`` when nothing is close."""
    near = nearest(word, choices, n)
    return f" Did you mean {', '.join(near)}?" if near else ""
