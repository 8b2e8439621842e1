"""The one level-list reader: BOM, blank lines, line numbers, the duplicate rule."""

from __future__ import annotations

import pytest

from contestkit.env.levellist import duplicates, read_levels, read_rows
from contestkit.errors import UsageError
from tests.support.paths import REPO


def test_a_spreadsheet_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfgame,state\r\nAirstriker-Genesis,Level1\r\n")
    assert read_levels(path) == [("Airstriker-Genesis", "Level1")]


def test_blank_lines_are_skipped_and_line_numbers_are_the_files(tmp_path):
    path = tmp_path / "levels.csv"
    path.write_text("\nGame , State\n\nA,B\n , \nC,D\n")
    rows = read_rows(path)
    assert [(r.game, r.state, r.line) for r in rows] == [("A", "B", 4), ("C", "D", 6)]
    path.write_text("game,state\n\nA,B\n\nC\n")
    with pytest.raises(UsageError, match=r"line 5: expected 'game,state', got 'C'"):
        read_levels(path)


def test_duplicates_are_kept_and_can_be_named(tmp_path):
    path = tmp_path / "levels.csv"
    path.write_text("game,state\nA,B\nC,D\nA,B\n")
    rows = read_rows(path)
    assert read_levels(path) == [("A", "B"), ("C", "D"), ("A", "B")]
    assert [(repeat.line, first.line) for repeat, first in duplicates(rows)] == [(4, 2)]


def test_what_is_not_a_level_list_is_one_sentence(tmp_path):
    path = tmp_path / "levels.csv"
    path.write_text("name,level\nA,B\n")
    with pytest.raises(UsageError, match="first line must be the header 'game,state' \\(found 'name,level'\\)"):
        read_levels(path)
    path.write_text("game,state\n\n")
    with pytest.raises(UsageError, match="lists no levels"):
        read_levels(path)
    path.write_bytes(b"PK\x03\x04\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="is not a CSV text file"):
        read_levels(path)
    with pytest.raises(UsageError, match="does not exist"):
        read_levels(tmp_path / "missing.csv")


def test_the_contests_own_lists_read():
    for name in ("sonic-train.csv", "sonic-validation.csv"):
        rows = read_rows(REPO / "examples" / name)
        assert len(rows) >= 5 and not duplicates(rows)


def test_the_server_and_eval_read_a_bom_file_alike(tmp_path):
    """Issue 10: the server's level-set reader refused a BOM file eval accepted ("must start with the header")."""
    from contestkit.env.levellist import read_level_set

    f = tmp_path / "l.csv"
    f.write_bytes(b"\xef\xbb\xbfgame,state\r\nA,B\r\n\r\nC,D\r\n")
    assert read_level_set(f) == read_levels(f) == [("A", "B"), ("C", "D")]


def test_one_level_type_for_a_named_level_and_one_reader(tmp_path):
    """Issue 26: server.config had its own LevelSpec and its own read_levels beside levellist's."""
    import contestkit.server.config as server_config
    from contestkit.env.levellist import LevelName, read_level_set

    f = tmp_path / "l.csv"
    f.write_text("game,state\nA,B\n")
    (level,) = read_level_set(f)
    assert isinstance(level, LevelName) and level.task == "A/B" and level == ("A", "B")
    assert [type(lv) for lv in read_levels(f)] == [LevelName]
    assert not hasattr(server_config, "LevelSpec") and not hasattr(server_config, "read_levels")


def test_a_contest_level_set_refuses_a_repeat_naming_both_lines(tmp_path):
    from contestkit.env.levellist import read_level_set

    f = tmp_path / "l.csv"
    f.write_text("game,state\nA,B\nC,D\nA,B\n")
    with pytest.raises(UsageError, match=r"line 4: A,B is listed twice \(first on line 2\)"):
        read_level_set(f)
    assert read_levels(f) == [("A", "B"), ("C", "D"), ("A", "B")]  # eval: a row is one level-run
