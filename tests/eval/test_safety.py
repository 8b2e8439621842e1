"""What `contestkit eval` must never do: lose earlier results, lie in a summary, or take bad input.

Real evaluations (local runtime) where the behaviour needs one; the results-directory rules are
checked on the library function every runtime and the server go through.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from contestkit.env.levellist import read_levels
from contestkit.errors import UsageError
from contestkit.runs import results
from tests.support.commands import run_cli
from tests.support.paths import GAME, REPO, STATE

AGENTS = REPO / "tests" / "agents"


def _eval(tmp_path: Path, *args: str, timeout: int = 180):
    return run_cli("eval", GAME, STATE, "--runtime", "local", *args, cwd=tmp_path, timeout=timeout)


def test_a_typo_with_force_does_not_cost_the_earlier_results(tmp_path):
    r = tmp_path / "r"
    assert _eval(tmp_path, "--timestep-limit", "300", "--results-dir", str(r)).returncode == 0
    before = (r / "summary.json").read_text()
    res = _eval(tmp_path, "--agent", "typo.py", "--force", "--results-dir", str(r))
    assert res.returncode == 2 and "Agent script typo.py does not exist" in res.stderr
    assert (r / "summary.json").read_text() == before and (r / "monitor.csv").exists()
    # Options that only mean something to Docker are refused, not silently dropped.
    res = _eval(tmp_path, "--image", "mine:v1", "--memory", "1g", "--force", "--results-dir", str(r))
    assert res.returncode == 2
    assert "--image and --memory only apply to the Docker runtime" in res.stderr
    assert (r / "summary.json").read_text() == before


def test_force_replaces_only_what_an_evaluation_wrote(tmp_path):
    run = tmp_path / "run"
    for name in ("summary.json", "monitor.csv", "reward-curve.svg", "out/old-checkpoint", "bk2/a.bk2", "notes.txt"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("old")
    results.prepare(run, force=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # the user's own file stays


def test_force_never_deletes_other_runs_inside(tmp_path):
    parent = tmp_path / "results"
    for name in ("20261125-101010", "my-notes"):
        (parent / name).mkdir(parents=True)
        (parent / name / "summary.json").write_text("{}")
    with pytest.raises(UsageError, match=r"holds other runs \(20261125-101010, my-notes\), which --force does not"):
        results.prepare(parent, force=True)
    assert (parent / "my-notes" / "summary.json").exists()
    # A contest run's own level directories (listed in its summary) are replaced, though.
    contest = tmp_path / "contest"
    (contest / "00-level").mkdir(parents=True)
    (contest / "00-level" / "summary.json").write_text("{}")
    results.write_json(contest / "summary.json", {"levels": [{"results_dir": "00-level"}]})
    results.prepare(contest, force=True)
    assert list(contest.iterdir()) == []


def test_default_directories_never_collide(tmp_path):
    made = {results.default_results_dir(tmp_path / "results") for _ in range(3)}
    assert len(made) == 3 and all(p.is_dir() for p in made)


def test_a_results_dir_that_cannot_be_made_is_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    res = _eval(tmp_path, "--results-dir", str(tmp_path / "file" / "sub"))
    assert res.returncode == 2 and "cannot be created" in res.stderr and "Traceback" not in res.stderr


def test_a_runtime_that_cannot_start_leaves_no_summary(tmp_path):
    r = tmp_path / "r"
    args = ("eval", GAME, STATE, "--runtime", "docker", "--results-dir", str(r))
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 2 and "needs an agent image" in first.stderr
    again = run_cli(*args, cwd=tmp_path)  # same sentence, not "already holds results"
    assert again.returncode == 2 and "needs an agent image" in again.stderr
    assert not (r / "summary.json").exists()


def test_an_agent_that_never_steps_is_not_a_pass(tmp_path):
    r = tmp_path / "r"
    # An hour to connect: waiting for a connection that cannot come would run past _eval's timeout.
    res = _eval(tmp_path, "--agent", str(AGENTS / "quitting_agent.py"), "--connect-timeout", "3600",
                "--results-dir", str(r))  # fmt: skip
    assert res.returncode == 1
    summary = json.loads((r / "summary.json").read_text())
    assert summary["ok"] is False and summary["timesteps"] == 0
    assert "exited (status 0) without taking a single step" in summary["error"]


def test_level_lists_from_spreadsheets_and_other_files(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfgame,state\r\nAirstriker-Genesis,Level1\r\n")
    assert read_levels(bom) == [("Airstriker-Genesis", "Level1")]
    binary = tmp_path / "levels.zip"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="is not a CSV text file"):
        read_levels(binary)


def test_levels_with_a_setup_mistake_fail_once_and_write_nothing(tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nAirstriker-Genesis,Level1\nAirstriker-Genesis,Level1\n")
    r = tmp_path / "r"
    res = run_cli("eval", "--levels", str(levels), "--runtime", "local", "--agent", "nope.py",
                  "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("Agent script nope.py does not exist") == 1
    assert "Contest score" not in res.stdout and not r.exists()


def test_bad_seed_and_empty_cpuset_are_refused(tmp_path):
    assert _eval(tmp_path, "--seed", "-1").returncode == 2
    res = _eval(tmp_path, "--cpuset", "")
    assert res.returncode == 2 and "is not a CPU list" in res.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
    assert os.listdir(tmp_path) in ([], ["results"])
