"""ROMs: which contest games can be played here, and importing the ones users bought.

Importing goes through the emulator package's own hash-matching importer
(``stable_retro.data.merge``), so a ROM lands exactly where ``python -m stable_retro.import``
would put it and the same file is found by every runtime.
"""

from __future__ import annotations

import io
import lzma
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from contestkit.env.games import CONTEST_GAMES, ROM_SOURCES, contest_name, retro, rom_path, states_of
from contestkit.errors import ContestkitError, UsageError


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


# The largest game stable-retro supports is 32 MiB (plus a 512-byte copier header); a bigger archive
# member cannot be a known ROM, so it is skipped unread rather than pulled into memory.
_MAX_ROM_BYTES = 0x2000000 + 512
# Errors a damaged archive member raises while it is read: a bad CRC, a broken deflate/bzip2/lzma
# stream, or data that ends early.
_DAMAGED = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


@dataclass
class RomProblem:
    """A file (or archive member) that could not be read, so any ROM in it was not imported."""

    file: str
    reason: str
    fix: str


@dataclass
class RomImport:
    """What an import did: the games imported and the files that could not be read."""

    imported: list[str] = field(default_factory=list)
    problems: list[RomProblem] = field(default_factory=list)


def import_roms(path: Path) -> list[str]:
    """Import every known ROM found under ``path`` (a file or a folder, zip archives included).

    Returns the contest-style names of the games imported. When a file could not be read (a
    damaged, encrypted or oddly compressed archive, say), every ROM that could be read is imported
    first and then one :class:`ContestkitError` names what was imported and which file failed.
    """
    result = import_roms_report(path)
    if result.problems:
        raise ContestkitError(_problems_sentence(result))
    return result.imported


def import_roms_report(path: Path) -> RomImport:
    """Like :func:`import_roms`, but returns the files that could not be read instead of raising.

    Raises :class:`UsageError` when ``path`` does not exist and :class:`ContestkitError` when an
    imported ROM cannot be written into the emulator's data folder (the ROMs imported before it
    stay imported, and the sentence names them).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"{path} does not exist; give the ROM file or the folder that holds your ROMs.")
    importer = _Importer(retro())
    for file in _candidates(path):
        importer.file(file, named=file == path)
    return importer.result


class _Importer:
    def __init__(self, stable_retro) -> None:
        self.retro = stable_retro
        self.known = stable_retro.data.get_known_hashes()
        self.result = RomImport()

    def problem(self, file: str, reason: str, fix: str) -> None:
        self.result.problems.append(RomProblem(file, reason, fix))

    def file(self, file: Path, *, named: bool) -> None:
        if file.suffix.lower() == ".zip":
            self.archive(file, str(file))
            return
        try:
            with open(file, "rb") as f:
                _, sha = self.retro.data.groom_rom(file.name, f)
        except ValueError:  # too big to be a ROM
            return
        except OSError as exc:
            # While searching a folder, unreadable files (broken links, say) are almost never ROMs.
            if named:
                self.problem(str(file), f"it cannot be opened ({_why(exc)})", "make it readable")
            return
        self.found(sha, file.name, str(file), None, file)

    def archive(self, source: Path | io.BytesIO, label: str) -> None:
        try:
            zf = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self.problem(label, f"it is not a readable zip archive ({_why(exc)})",
                         "download it again, or unpack it with your archive tool")  # fmt: skip
            return
        with zf:
            for entry in zf.infolist():
                name = PurePosixPath(entry.filename).name
                nested = name.lower().endswith(".zip")
                if entry.is_dir() or (entry.file_size > _MAX_ROM_BYTES and not nested):
                    continue
                where = f"{label} (member {entry.filename})"
                try:
                    data = zf.read(entry)
                except NotImplementedError:
                    self.problem(where, f"it uses a compression method this Python cannot read "
                                        f"(method {entry.compress_type})",
                                 "unpack it with your archive tool")  # fmt: skip
                    continue
                except RuntimeError:  # zipfile's word for "encrypted, password required" (after its subclass above)
                    self.problem(where, "it is encrypted", "unpack it with its password")
                    continue
                except _DAMAGED as exc:
                    self.problem(where, f"its data is damaged ({_why(exc)})", "download the archive again")
                    continue
                if nested:
                    self.archive(io.BytesIO(data), where)
                    continue
                try:
                    _, sha = self.retro.data.groom_rom(name, io.BytesIO(data))
                except ValueError:
                    continue
                self.found(sha, name, where, data, None)

    def found(self, sha: str, name: str, where: str, data: bytes | None, file: Path | None) -> None:
        """Import one file whose hash is ``sha``: ``file`` on disk, or the archive member's ``data``."""
        if sha not in self.known:
            return
        if file is not None:
            self.merge(sha, file)
            return
        try:
            with tempfile.TemporaryDirectory(prefix="contestkit-rom-") as tmp:
                target = Path(tmp) / name  # merge() picks the ROM's format by its file name
                target.write_bytes(data)
                self.merge(sha, target)
        except OSError as exc:
            raise ContestkitError(
                self._imported_so_far(f"could not unpack {where} into a temporary folder ({_why(exc)}); ")
                + "free some disk space there or point TMPDIR at a writable folder, then run the import again."
            ) from exc

    def merge(self, sha: str, file: Path) -> None:
        emulator_game, _, curpath = self.known[sha]
        game = contest_name(emulator_game)
        try:
            self.retro.data.merge(str(file), quiet=True)
        except OSError as exc:
            raise ContestkitError(
                self._imported_so_far(f"could not save the {game} ROM into {Path(curpath) / emulator_game} ")
                + f"({_why(exc)}); make that folder writable (or install stable-retro where you may write, "
                "e.g. in a virtual environment) and run the import again."
            ) from exc
        if game not in self.result.imported:
            self.result.imported.append(game)

    def _imported_so_far(self, rest: str) -> str:
        """``rest`` of a sentence, led by the games already imported (they stay imported)."""
        if self.result.imported:
            return f"Imported {_and(self.result.imported)}, but {rest}"
        return rest[0].upper() + rest[1:]


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _problems_sentence(result: RomImport) -> str:
    head = f"Imported {_and(result.imported)}, but could not read " if result.imported else "Could not read "
    problems = result.problems
    if len(problems) == 1:
        p = problems[0]
        return f"{head}{p.file}: {p.reason}; {p.fix}, then run `contestkit roms import` again."
    shown = "; ".join(f"{p.file}: {p.reason}" for p in problems[:3])
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    return (
        f"{head}{len(problems)} files ({shown}{more}); download damaged archives again and unpack encrypted or "
        "oddly compressed ones with your archive tool, then run `contestkit roms import` again."
    )
