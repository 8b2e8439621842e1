"""Team names as people read them: one form per name, no hidden reordering, no look-alikes.

Team names are shown on the public leaderboard, the host's tables and the pages, so a name is
checked for what it *looks* like, not only for its bytes:

- it is NFKC-normalised (``ﬁ`` is ``fi``, a full-width ``Ａ`` is ``A``), so one name has one form;
- bidirectional controls and other invisible format characters (Unicode category ``Cf``: U+202E
  RIGHT-TO-LEFT OVERRIDE, zero-width joiners...) are refused: they reorder or hide what is shown;
- a name whose *skeleton* equals an existing team's is refused as confusable ("аlpha" with a
  Cyrillic а next to "alpha"). The skeleton follows Unicode TR39's idea with a small table of the
  Cyrillic, Greek and ASCII look-alikes that matter in practice (TR39's full table has thousands of
  entries, mostly for scripts no team name here uses), after case folding.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from contestkit.errors import UsageError
from contestkit.server.storage.db import Team

# One character -> the Latin letter it is drawn like (lower case: skeletons are case-folded first).
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "н": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "ӏ": "l", "м": "m", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y",
    "ү": "y", "х": "x", "ԝ": "w", "ь": "b", "ɡ": "g", "п": "n",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Latin and ASCII
    "ı": "i", "ł": "l", "ø": "o", "0": "o", "1": "l", "|": "l", "!": "l", "$": "s", "5": "s", "@": "a",
}  # fmt: skip
_SEQUENCES = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def normalise(name: str) -> str:
    """The name's one stored form (NFKC, trimmed); refuses invisible format and bidi characters."""
    name = unicodedata.normalize("NFKC", name).strip()
    hidden = sorted({f"U+{ord(ch):04X}" for ch in name if unicodedata.category(ch) == "Cf"})
    if hidden:
        raise UsageError(
            f"The team name contains invisible or direction-changing characters ({', '.join(hidden)}); use plain text."
        )
    return name


def skeleton(name: str) -> str:
    """What the name looks like: case-folded, look-alike letters as Latin, marks dropped."""
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name).casefold())
    text = "".join(_LOOKALIKES.get(ch, ch) for ch in folded if unicodedata.category(ch) != "Mn")
    for sequence, letter in _SEQUENCES:
        text = text.replace(sequence, letter)
    return text


def confusable_with(db: Session, name: str, *, team_id: int | None = None) -> str | None:
    """The existing team (not removed, not ``team_id``) whose name looks like ``name``, if any."""
    wanted = skeleton(name)
    query = select(Team.id, Team.name).where(Team.removed_at.is_(None))
    for other_id, other in db.execute(query):
        if other_id != team_id and skeleton(other) == wanted:
            return str(other)
    return None
