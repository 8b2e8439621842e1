"""Every run is reproducible: the drawn seed is recorded, and ``--seed`` replays the env's side.

Real env processes and the real emulator: a deterministic agent (the same action sequence each
run) is evaluated with --record, so the recorded button presses differ between runs only by the
env's sticky-action draws."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.paths import AGENTS, GAME, STATE
from tests.support.recordings import input_logs

CYCLING = AGENTS / "cycling_agent.py"


def _eval(cli, tmp_path: Path, name: str, *extra: str):
    r = tmp_path / name
    res = cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(CYCLING), "--timestep-limit", "400",
              "--record", "--results-dir", str(r), "--quiet", *extra, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return r, res


def test_drawn_seed_is_recorded_and_reproduces_the_sticky_draws(cli, tmp_path):
    first, res = _eval(cli, tmp_path, "drawn")
    seed = json.loads((first / "summary.json").read_text())["seed"]
    assert isinstance(seed, int)
    assert json.loads((first / "remote-status.json").read_text())["seed"] == seed
    assert f"seed {seed}" in res.stdout  # the results table's title
    assert f"seed {seed}" in res.stderr.splitlines()[0]  # and the first line
    again, _ = _eval(cli, tmp_path, "again", "--seed", str(seed))
    other, _ = _eval(cli, tmp_path, "other", "--seed", str(seed + 1))
    logs = input_logs(first)
    assert logs and logs == input_logs(again)  # the same presses, frame by frame
    assert logs != input_logs(other)  # and a different seed draws differently


def test_levels_run_records_its_seed_and_each_levels(cli, tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text(f"game,state\n{GAME},{STATE}\n{GAME},{STATE}\n")
    r = tmp_path / "contest"
    res = cli("eval", "--levels", str(levels), "--runtime", "local", "--agent", str(CYCLING),
              "--timestep-limit", "100", "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((r / "summary.json").read_text())
    seed = summary["seed"]
    assert isinstance(seed, int) and f"seed {seed}" in res.stdout
    # Each level's seed is the run's plus its index, the contest server's rule: --seed N reproduces a job.
    assert [level["seed"] for level in summary["levels"]] == [seed, seed + 1]
    for level in summary["levels"]:
        assert json.loads((r / level["results_dir"] / "remote-status.json").read_text())["seed"] == level["seed"]
