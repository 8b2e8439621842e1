"""The benchmark pages are generated from the result files, and every figure says when, where and how it was taken.

``docs/hooks/benchmarks.py`` renders them at build time; these tests run it on the repository's own result files
and on small files made here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.docs import DOCS, REPO, load_hook

bench = load_hook("benchmarks")
BENCH_PAGES = sorted(DOCS.glob("bench*.md"))


def test_there_are_result_files_and_pages():
    """Guards the tests below against passing on nothing."""
    assert len(bench.result_files()) >= 20
    assert DOCS / "benchmarks.md" in BENCH_PAGES


@pytest.mark.parametrize("path", bench.result_files(), ids=str)
def test_every_result_file_renders_with_its_date_machine_and_command(path: Path):
    text = bench.render_file(path)
    for record in bench.load(path):
        assert f"Measured {record['date']} on" in text
        assert str(record["command"]) in text
    assert "|" in text, f"{path} rendered no table"


def test_the_all_results_page_lists_every_file():
    page = bench.render_all()
    for path in bench.result_files():
        assert f"## `{path.as_posix()}`" in page


def test_a_result_without_a_command_is_refused(tmp_path: Path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "x.json").write_text(json.dumps({"date": "2026-12-06", "machine": "m"}))
    with pytest.raises(bench.BenchDocError, match="has no command"):
        bench.render_file(Path("bench/results/x.json"), tmp_path)


def test_a_jsonl_line_without_a_date_is_refused_by_line(tmp_path: Path):
    lines = [{"date": "d", "machine": "m", "command": "c"}, {"machine": "m", "command": "c"}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(bench.BenchDocError, match="line 2 has no date"):
        bench.load(Path("r.jsonl"), tmp_path)


def test_a_marker_naming_a_missing_file_is_refused():
    with pytest.raises(bench.BenchDocError, match="does not exist"):
        bench.expand_markers("<!-- bench: bench/results/no-such-file.json -->\n")


@pytest.mark.parametrize("page", BENCH_PAGES, ids=lambda p: p.name)
def test_benchmark_pages_have_no_hand_written_tables(page: Path):
    """Figures come from result files through markers; a table typed into the page would not say where it came from."""
    lines = [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    assert not lines, f"{page.name} has a hand-written table ({lines[0]!r}): put its figures in a result file"


@pytest.mark.parametrize("page", BENCH_PAGES, ids=lambda p: p.name)
def test_every_marker_of_the_benchmark_pages_renders(page: Path):
    text = bench.expand_markers(page.read_text(encoding="utf-8"))
    assert "<!-- bench:" not in text


def test_every_picture_is_shown():
    pages = "".join(p.read_text(encoding="utf-8") for p in DOCS.glob("*.md"))
    for svg in (REPO / "bench" / "results").glob("*.svg"):
        assert f"(bench/{svg.name})" in pages, f"bench/results/{svg.name} is shown on no page"
