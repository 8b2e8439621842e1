"""``contestkit roms import`` on zip archives: every ROM in an archive, and damaged archives.

The real Airstriker-Genesis ROM (the only one that ships with stable-retro) goes through the real
importer (``stable_retro.data.get_known_hashes``, ``groom_rom`` and ``merge``). One thing is
redirected: the known-hash table is the real one with each game's data folder moved under
``tmp_path``, so ``merge`` writes there and these tests never rewrite the installed ROM that other
tests are playing at the same time.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from contestkit.env.games import retro, rom_path
from contestkit.env.roms import import_roms, import_roms_report
from contestkit.errors import ContestkitError

AIRSTRIKER = "Airstriker-Genesis"
# A second known ROM: the Sonic ROMs are not available here, so a few made-up bytes stand in for one,
# and their hash is added to the known-hash table as the game "StandIn-Genesis-v0" (see `data_dir`).
STAND_IN = "StandIn-Genesis"
STAND_IN_BYTES = b"contestkit stand-in for a second known Genesis ROM\n" * 64

_REAL_KNOWN: dict | None = None


def _real_known() -> dict:
    global _REAL_KNOWN
    if _REAL_KNOWN is None:
        _REAL_KNOWN = retro().data.get_known_hashes()
    return _REAL_KNOWN


@pytest.fixture(scope="module")
def airstriker_rom() -> bytes:
    path = rom_path(AIRSTRIKER)
    assert path is not None, "the Airstriker ROM ships with stable-retro"
    return path.read_bytes()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder ``merge`` writes into: the real known hashes, every game's folder moved here."""
    stable_retro = retro()
    dest = tmp_path / "retro-data"
    known = {sha: (game, ext, str(dest)) for sha, (game, ext, _) in _real_known().items()}
    _, stand_in_sha = stable_retro.data.groom_rom("standin.md", io.BytesIO(STAND_IN_BYTES))
    known[stand_in_sha] = (f"{STAND_IN}-v0", ".md", str(dest))
    for game in (f"{AIRSTRIKER}-v0", f"{STAND_IN}-v0"):
        (dest / game).mkdir(parents=True)
    # merge() calls the module-level get_known_hashes too, so both contestkit and merge see this table.
    monkeypatch.setattr(stable_retro.data, "get_known_hashes", lambda: known)
    return dest


def _zip(path: Path, members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def _patch_member(path: Path, name: str, *, flags: int | None = None, method: int | None = None) -> None:
    """Rewrite a member's general-purpose flags or compression method in both of its headers."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        central = [i for i in range(len(raw)) if raw[i : i + 4] == b"PK\x01\x02"]
        index = [i.filename for i in zf.infolist()].index(name)
    for offset in (info.header_offset + 6, central[index] + 8):  # local header, central directory
        if flags is not None:
            struct.pack_into("<H", raw, offset, flags)
        if method is not None:
            struct.pack_into("<H", raw, offset + 2, method)
    path.write_bytes(bytes(raw))


def _damage_member(path: Path, name: str) -> None:
    """Overwrite the start of a deflated member's compressed data with bytes that are not deflate."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))


def test_zip_with_several_roms_imports_every_one(tmp_path, data_dir, airstriker_rom):
    """Both known ROMs in one archive are imported, not only the first (the second is the stand-in)."""
    archive = _zip(
        tmp_path / "roms.zip",
        [("readme.txt", b"not a rom"), ("Airstriker.md", airstriker_rom), ("stand-in.md", STAND_IN_BYTES)],
    )
    assert sorted(import_roms(archive)) == [AIRSTRIKER, STAND_IN]
    assert (data_dir / f"{AIRSTRIKER}-v0" / "rom.md").read_bytes() == airstriker_rom
    assert (data_dir / f"{STAND_IN}-v0" / "rom.md").read_bytes() == STAND_IN_BYTES


def test_reimporting_the_same_rom_is_harmless(tmp_path, data_dir, airstriker_rom):
    archive = _zip(tmp_path / "a.zip", [("Airstriker.md", airstriker_rom)])
    assert import_roms(archive) == [AIRSTRIKER]
    assert import_roms(archive) == [AIRSTRIKER]
    assert (data_dir / f"{AIRSTRIKER}-v0" / "rom.md").read_bytes() == airstriker_rom


def test_damaged_deflate_member_imports_the_good_rom_then_says_which_member(tmp_path, data_dir, airstriker_rom):
    archive = _zip(tmp_path / "roms.zip", [("second.md", b"a second game " * 4000), ("Airstriker.md", airstriker_rom)])
    _damage_member(archive, "second.md")
    with zipfile.ZipFile(archive) as zf, pytest.raises(zlib.error):  # the failure the reviewer hit
        zf.read("second.md")

    with pytest.raises(ContestkitError) as err:
        import_roms(archive)
    message = str(err.value)
    assert message.startswith(f"Imported {AIRSTRIKER}, but could not read {archive} (member second.md)")
    assert "damaged" in message and "download the archive again" in message
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
    # The good ROM after the damaged member was imported all the same.
    assert (data_dir / f"{AIRSTRIKER}-v0" / "rom.md").read_bytes() == airstriker_rom


def test_encrypted_and_unsupported_members_are_reported_together(tmp_path, data_dir, airstriker_rom):
    archive = _zip(
        tmp_path / "roms.zip",
        [("locked.md", b"x" * 100), ("odd.md", b"y" * 100), ("Airstriker.md", airstriker_rom)],
    )
    _patch_member(archive, "locked.md", flags=0x1)  # "encrypted": zipfile raises RuntimeError
    _patch_member(archive, "odd.md", method=99)  # WinZip AES: zipfile raises NotImplementedError

    report = import_roms_report(archive)
    assert report.imported == [AIRSTRIKER]
    assert [(p.file, p.reason.split(" (")[0]) for p in report.problems] == [
        (f"{archive} (member locked.md)", "it is encrypted"),
        (f"{archive} (member odd.md)", "it uses a compression method this Python cannot read"),
    ]
    with pytest.raises(ContestkitError, match=rf"^Imported {AIRSTRIKER}, but could not read 2 files \("):
        import_roms(archive)


def test_a_file_that_is_not_a_zip_is_reported_and_the_rest_of_the_folder_imported(tmp_path, data_dir, airstriker_rom):
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "cut-short.zip").write_bytes(_zip(tmp_path / "x.zip", [("a.md", b"z" * 5000)]).read_bytes()[:60])
    _zip(folder / "good.zip", [("Airstriker.md", airstriker_rom)])

    report = import_roms_report(folder)
    assert report.imported == [AIRSTRIKER]
    assert [p.file for p in report.problems] == [str(folder / "cut-short.zip")]
    assert report.problems[0].reason.startswith("it is not a readable zip archive")


def test_data_folder_that_cannot_be_written_is_one_sentence_after_the_roms_before_it(
    tmp_path, data_dir, airstriker_rom
):
    """A real OSError out of the real ``merge``: the Airstriker ``rom.md`` it must write is a folder."""
    (data_dir / f"{AIRSTRIKER}-v0" / "rom.md").mkdir()
    archive = _zip(tmp_path / "roms.zip", [("stand-in.md", STAND_IN_BYTES), ("Airstriker.md", airstriker_rom)])
    with pytest.raises(ContestkitError) as err:
        import_roms(archive)
    message = str(err.value)
    assert message.startswith(f"Imported {STAND_IN}, but could not save the {AIRSTRIKER} ROM into {data_dir}")
    assert "make that folder writable" in message and "\n" not in message
    assert (data_dir / f"{STAND_IN}-v0" / "rom.md").read_bytes() == STAND_IN_BYTES


def test_cli_prints_one_error_line_not_a_traceback(tmp_path, data_dir, airstriker_rom, capsys):
    """``contestkit roms import`` in-process (so the redirected data folder applies)."""
    from contestkit.cli import main

    archive = _zip(tmp_path / "roms.zip", [("second.md", b"a second game " * 4000), ("Airstriker.md", airstriker_rom)])
    _damage_member(archive, "second.md")
    with pytest.raises(SystemExit) as exit_:
        main(["roms", "import", str(archive)])
    out, err = capsys.readouterr()
    assert exit_.value.code == 1
    assert "Traceback" not in err
    flat = " ".join(err.split())
    assert flat.startswith(f"error: Imported {AIRSTRIKER}, but could not read") and flat.count("error:") == 1

    good = _zip(tmp_path / "good.zip", [("Airstriker.md", airstriker_rom), ("stand-in.md", STAND_IN_BYTES)])
    with pytest.raises(SystemExit) as exit_:
        main(["roms", "import", str(good)])
    out, _ = capsys.readouterr()
    assert exit_.value.code == 0
    assert f"imported {AIRSTRIKER}" in out and f"imported {STAND_IN}" in out
