"""Game-name suggestions point at games that can be evaluated (issue 9, item 14)."""

from __future__ import annotations

import pytest

from contestkit.env.games import CONTEST_GAMES, resolve_level, rom_path
from contestkit.errors import NotFoundError


def _suggestions(word: str) -> str:
    with pytest.raises(NotFoundError) as info:
        resolve_level(word, None)
    return str(info.value)


def test_a_lower_case_contest_name_suggests_only_that_game() -> None:
    message = _suggestions("airstriker")
    assert "Did you mean Airstriker-Genesis?" in message
    # Before the fix: "Airstriker-Genesis, PowerStrike-Sms, ArkistasRing-Nes".
    assert "PowerStrike" not in message and "ArkistasRing" not in message


@pytest.mark.parametrize(
    "word, expected", [("sonic2", "SonicTheHedgehog2-Genesis"), ("airstrker-genesis", "Airstriker-Genesis")]
)
def test_abbreviations_and_typos_find_the_contest_game(word: str, expected: str) -> None:
    assert f"Did you mean {expected}" in _suggestions(word)


def test_suggestions_outside_the_contest_have_an_imported_rom() -> None:
    message = _suggestions("Tetrix-Gameboy")
    named = message.split("Did you mean ", 1)[1].split("?", 1)[0].split(", ") if "Did you mean" in message else []
    for game in named:
        assert game in CONTEST_GAMES or rom_path(game) is not None, message
    assert "`contestkit roms list`" in message
