"""Score formula and the monitor files the contest scored from."""

from __future__ import annotations

import csv

from contestkit.env.monitor import EpisodeLog
from contestkit.env.scoring import contest_score, level_score
from contestkit.runs.results import read_monitor


def test_contest_example_score():
    # The worked example in the contest rules.
    assert contest_score([level_score([10, 20, 30]), level_score([40, 50])]) == 32.5


def test_level_without_episodes():
    assert level_score([]) is None
    assert contest_score([None, 10.0]) == 5.0
    assert contest_score([]) is None


def test_monitor_rows_are_flushed_as_episodes_end(tmp_path):
    log = EpisodeLog(tmp_path, log_every=3)
    for r in (1.0, 2.0, 3.0):
        log.record(r, done=False)
    log.record(4.0, done=True)
    # Readable before close(): a crash right now loses nothing finished.
    assert read_monitor(tmp_path / "monitor.csv") == [(10.0, 4, read_monitor(tmp_path / "monitor.csv")[0][2])]
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["l"]) for r in rows] == [3]
    log.record(1.5, done=False)
    log.discard_partial()
    log.record(2.5, done=True)
    log.close()
    eps = read_monitor(tmp_path / "monitor.csv")
    assert [(r, ln) for r, ln, _ in eps] == [(10.0, 4), (2.5, 1)]
    assert eps[0][2] <= eps[1][2]
    with open(tmp_path / "monitor.csv") as f:
        assert f.readline().strip() == "r,l,t"
