"""The level-list reader: the contest's CSV of levels (``sonic-validation.csv`` and the like).

One reader for ``contestkit eval --levels`` and the contest server, so a file one accepts the
other accepts too. The rules:

* the first non-blank line is the header ``game,state`` (case and spaces around names ignored);
  a UTF-8 byte-order mark before it is accepted, since spreadsheets write one;
* blank lines (and lines of only commas or spaces) are skipped anywhere;
* every other line needs a game and a state; a bad one is refused with its line number (the line
  in the file, blank lines counted, so an editor's line number matches);
* a level is a :class:`LevelName` (game and state, as a list names it), the one type for a level
  before it is resolved against the emulator's data (that is :class:`contestkit.env.games.Level`);
* duplicates: for ``contestkit eval`` a row is one level-run, so a level listed twice is evaluated
  twice (each gets its own results directory: repeated runs of one level are how a contestant
  measures variance). A contest's level set (:func:`read_level_set`) scores each level once per
  job and shows it by name, so there a repeat is refused, naming both lines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from contestkit.errors import UsageError

HEADER = ("game", "state")


class LevelName(NamedTuple):
    """A level as a level list (or a job's row in the server's database) names it: game and state.

    A tuple, so ``game, state = level`` and ``level == ("Airstriker-Genesis", "Level1")`` hold; what the
    emulator makes of it (its game id, its scenario) is :class:`contestkit.env.games.Level`'s job.
    """

    game: str
    state: str

    @property
    def task(self) -> str:
        """The worker's ``task`` string in the server's API (the 2018 client prints it as is)."""
        return f"{self.game}/{self.state}"


@dataclass(frozen=True)
class LevelRow:
    """One line of a level list: the level it names, and where (for messages naming the line)."""

    game: str
    state: str
    line: int  # 1-based line of the file it came from

    @property
    def level(self) -> LevelName:
        return LevelName(self.game, self.state)


def read_rows(path: Path) -> list[LevelRow]:
    """The levels a level list names, in file order, each with its line number."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise UsageError(f"Level list {path} does not exist; pass a CSV with the header game,state.") from None
    except OSError as exc:
        raise UsageError(f"Cannot read the level list {path}: {exc.strerror}.") from None
    except (UnicodeDecodeError, csv.Error):
        raise UsageError(f"{path} is not a CSV text file; a level list is a CSV with the header game,state.") from None
    # csv.reader yields one row per record; with no quoted newlines (none in a level list) that is a line.
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if row and any(c.strip() for c in row)]
    if not numbered or tuple(c.strip().lower() for c in numbered[0][1][:2]) != HEADER:
        found = ",".join(numbered[0][1]) if numbered else ""
        raise UsageError(f"{path}: the first line must be the header 'game,state' (found '{found}').")
    levels = []
    for lineno, row in numbered[1:]:
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"{path}, line {lineno}: expected 'game,state', got {','.join(row)!r}.")
        levels.append(LevelRow(row[0].strip(), row[1].strip(), lineno))
    if not levels:
        raise UsageError(f"{path} lists no levels under its 'game,state' header.")
    return levels


def read_levels(path: Path) -> list[LevelName]:
    """``(game, state)`` of every row of a level list (see the module's rules)."""
    return [row.level for row in read_rows(path)]


def read_level_set(path: Path) -> list[LevelName]:
    """A contest's level set: the same rules, and each level once (a repeat names both its lines)."""
    rows = read_rows(path)
    repeats = duplicates(rows)
    if repeats:
        repeat, first = repeats[0]
        raise UsageError(
            f"{path}, line {repeat.line}: {repeat.game},{repeat.state} is listed twice (first on line {first.line}); "
            "a contest scores each level once per job, so remove one."
        )
    return [row.level for row in rows]


def duplicates(rows: list[LevelRow]) -> list[tuple[LevelRow, LevelRow]]:
    """``(repeat, first)`` for each row naming a level an earlier row already named."""
    first: dict[tuple[str, str], LevelRow] = {}
    repeats = []
    for row in rows:
        if row.level in first:
            repeats.append((row, first[row.level]))
        else:
            first[row.level] = row
    return repeats
