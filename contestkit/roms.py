"""ROMs: which contest games can be played here, and importing the ones users bought.

Importing goes through the emulator package's own hash-matching importer
(``stable_retro.data.merge``), so a ROM lands exactly where ``python -m stable_retro.import``
would put it and the same file is found by every runtime.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from contestkit.errors import UsageError
from contestkit.games import CONTEST_GAMES, ROM_SOURCES, retro, rom_path, states_of


@dataclass
class RomStatus:
    game: str
    present: bool
    path: str | None
    levels: int
    source: str


def list_roms(games: tuple[str, ...] = CONTEST_GAMES) -> list[RomStatus]:
    """The contest games and whether each ROM has been imported."""
    out = []
    for game in games:
        path = rom_path(game)
        out.append(RomStatus(game, path is not None, str(path) if path else None, len(states_of(game)),
                             ROM_SOURCES.get(game, "")))  # fmt: skip
    return out


def _candidates(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = []
    for root, _, names in os.walk(path):
        files.extend(Path(root) / n for n in names)
    return files


def import_roms(path: Path) -> list[str]:
    """Import every known ROM found under ``path`` (a file or a folder, zip archives included).

    Returns the contest-style names of the games imported.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"{path} does not exist; give the ROM file or the folder that holds your ROMs.")
    stable_retro = retro()
    known = stable_retro.data.get_known_hashes()
    imported: list[str] = []
    for file in _candidates(path):
        game = _import_one(stable_retro, known, file)
        if game and game not in imported:
            imported.append(game)
    return imported


def _import_one(stable_retro, known: dict, file: Path) -> str | None:
    from contestkit.games import contest_name

    if file.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(file) as zf:
                for entry in zf.infolist():
                    if entry.is_dir():
                        continue
                    target = (
                        Path(os.environ.get("TMPDIR", "/tmp"))
                        / f"contestkit-rom-{os.getpid()}-{Path(entry.filename).name}"
                    )
                    target.write_bytes(zf.read(entry))
                    try:
                        game = _import_one(stable_retro, known, target)
                    finally:
                        target.unlink(missing_ok=True)
                    if game:
                        return game
        except zipfile.BadZipFile:
            return None
        return None
    try:
        with open(file, "rb") as f:
            _, sha = stable_retro.data.groom_rom(file.name, f)
    except (OSError, ValueError):
        return None
    if sha not in known:
        return None
    stable_retro.data.merge(str(file), quiet=True)
    return contest_name(known[sha][0])
