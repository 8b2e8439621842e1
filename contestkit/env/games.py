"""Contest game and level names, and where the emulator package keeps their data.

Users type the contest's names (``SonicTheHedgehog-Genesis``); stable-retro calls the same game
``SonicTheHedgehog-Genesis-v0``. Every other module goes through :func:`resolve_level` so the
suffix, the contest scenario and the ROM check live in exactly one place.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path

from contestkit.errors import ContestkitError, NotFoundError
from contestkit.suggest import did_you_mean, nearest

# The games of the 2018 Retro Contest, plus Airstriker, whose ROM ships with the emulator package
# and which the contest documentation itself used for the first local evaluation.
CONTEST_GAMES: tuple[str, ...] = (
    "SonicTheHedgehog-Genesis",
    "SonicTheHedgehog2-Genesis",
    "SonicAndKnuckles3-Genesis",
    "Airstriker-Genesis",
)

# Where each ROM comes from, for the message users see when it is missing.
ROM_SOURCES: dict[str, str] = {
    "SonicTheHedgehog-Genesis": "Steam (SEGA Mega Drive & Genesis Classics)",
    "SonicTheHedgehog2-Genesis": "Steam (SEGA Mega Drive & Genesis Classics)",
    "SonicAndKnuckles3-Genesis": "Steam (SEGA Mega Drive & Genesis Classics)",
    "Airstriker-Genesis": "the stable-retro package itself",
}

_EMULATOR_SUFFIX = "-v0"

# Names short enough for an 80-column progress line, for the games whose names are long.
SHORT_NAMES: dict[str, str] = {
    "SonicTheHedgehog-Genesis": "Sonic1",
    "SonicTheHedgehog2-Genesis": "Sonic2",
    "SonicAndKnuckles3-Genesis": "Sonic3&K",
}


class RomMissingError(ContestkitError):
    """The game exists but its ROM has not been imported."""


def retro():
    """Import stable-retro lazily: the agent side of the bridge must not need the emulator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import stable_retro

    return stable_retro


def contest_name(emulator_name: str) -> str:
    """The name users see for an emulator game name."""
    if emulator_name.endswith(_EMULATOR_SUFFIX):
        return emulator_name[: -len(_EMULATOR_SUFFIX)]
    return emulator_name


def short_level(game: str, state: str) -> str:
    """A level's name abbreviated for narrow terminals: ``Sonic2 EmeraldHill.Act1``, ``Airstriker Level1``.

    Games lose their platform suffix (or take a short name), states the word "Zone"; both stay
    recognisable, which cutting them at the terminal's edge does not.
    """
    short = SHORT_NAMES.get(game) or game.rsplit("-", 1)[0]
    return f"{short} {state.replace('Zone.', '.').replace('Zone', '')}".strip()


def emulator_name(name: str) -> str:
    """The emulator package's name for a contest game name (accepts either spelling)."""
    return name if name.endswith(_EMULATOR_SUFFIX) else name + _EMULATOR_SUFFIX


def all_games() -> list[str]:
    """Every game the emulator package knows, by contest-style name."""
    return sorted(contest_name(g) for g in retro().data.list_games(retro().data.Integrations.ALL))


def _nearest(word: str, choices: list[str], n: int = 3) -> list[str]:
    return nearest(word, choices, n)


def _did_you_mean(word: str, choices: list[str]) -> str:
    return did_you_mean(word, choices)


def _is_abbreviation(word: str, name: str) -> bool:
    """``sonic2`` for ``SonicTheHedgehog2-Genesis``: the typed letters appear in order in the name."""
    letters = iter("".join(ch for ch in name.lower() if ch.isalnum()))
    typed = "".join(ch for ch in word.lower() if ch.isalnum())
    return len(typed) >= 3 and all(ch in letters for ch in typed)


def _game_hint(word: str, known: list[str]) -> str:
    """The "did you mean" for an unknown game: contest games first, other games only with a ROM.

    Nearly everyone means a contest game; a game outside the contest whose ROM is not imported
    (stable-retro knows about a thousand) could not be evaluated anyway, so suggesting it misleads.
    """
    contest = _nearest(word, list(CONTEST_GAMES))
    contest += [g for g in CONTEST_GAMES if g not in contest and _is_abbreviation(word, g)]
    if contest and difflib.SequenceMatcher(None, word.lower(), contest[0].lower()).ratio() >= 0.85:
        contest = contest[:1]  # a near-certain match: the others would only be noise
    if contest:
        return f" Did you mean {', '.join(contest[:3])}?"
    playable = [g for g in _nearest(word, known, n=6) if rom_path(g) is not None]
    return f" Did you mean {', '.join(playable[:3])}?" if playable else ""


@dataclass(frozen=True)
class Level:
    """One contest level, resolved against the emulator package's data."""

    game: str  # contest name, e.g. "Airstriker-Genesis"
    state: str  # e.g. "Level1"
    emulator_game: str  # e.g. "Airstriker-Genesis-v0"
    scenario: str  # "contest" for the Sonic games, else the game's default "scenario"

    @property
    def slug(self) -> str:
        """A directory name for this level's results."""
        return f"{self.game}_{self.state}"


def states_of(game: str) -> list[str]:
    """The save states (levels) of a game."""
    return list(retro().data.list_states(emulator_name(game), retro().data.Integrations.ALL))


def rom_path(game: str) -> Path | None:
    """Where the game's imported ROM lies, or None when it has not been imported."""
    try:
        return Path(retro().data.get_romfile_path(emulator_name(game), retro().data.Integrations.ALL))
    except FileNotFoundError:
        return None


def resolve_level(game: str, state: str | None, *, check_rom: bool = True) -> Level:
    """Check a game and state the user typed and say what to do when either is wrong.

    The ROM check comes last so that a typo is reported as a typo, not as a missing ROM.
    """
    known = all_games()
    if contest_name(game) not in known:
        hint = _game_hint(game, known)
        raise NotFoundError(f"Unknown game '{game}'.{hint} `contestkit roms list` shows the contest games.")
    game = contest_name(game)
    states = states_of(game)
    if state is None:
        if not states:
            raise NotFoundError(f"Game '{game}' has no levels (save states) in the emulator package.")
        state = "Level1" if "Level1" in states else states[0]
    if state.endswith(".state"):
        state = state[: -len(".state")]
    if state not in states:
        raise NotFoundError(
            f"Unknown state '{state}' for {game}.{_did_you_mean(state, states)} "
            f"Valid states: {', '.join(states[:8])}{' ...' if len(states) > 8 else ''}."
        )
    scenarios = retro().data.list_scenarios(emulator_name(game), retro().data.Integrations.ALL)
    scenario = "contest" if "contest" in scenarios else "scenario"
    if check_rom and rom_path(game) is None:
        raise RomMissingError(
            f"The ROM of {game} is not imported (it comes from {ROM_SOURCES.get(game, 'the game publisher')}): "
            f"run `contestkit roms import PATH` with the folder that holds it."
        )
    return Level(game=game, state=state, emulator_game=emulator_name(game), scenario=scenario)
