"""`contestkit eval --runtime local` end to end: real env process, real agent process, real files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from contestkit.runs.results import read_monitor
from tests.support.commands import run_cli
from tests.support.evals import processes_mentioning, wait_for_progress
from tests.support.paths import GAME, REPO, STATE
from tests.support.polling import wait_until

AGENTS = REPO / "tests" / "agents"


def _no_process_mentions(text: str) -> bool:
    return not processes_mentioning(text)


def test_contest_documented_agent_runs_unchanged(tmp_path):
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "contest_doc_agent.py"),
                  "--timestep-limit", "6000", "--results-dir", str(r), "--seed", "0", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    episodes = read_monitor(r / "monitor.csv")
    assert episodes, "monitor.csv holds no episode"
    assert all(length <= 4500 for _, length, _ in episodes)
    summary = json.loads((r / "summary.json").read_text())
    assert summary["timesteps"] == 6000 and summary["end_reason"] == "timestep-budget"
    assert summary["episodes"] == len(episodes)
    assert summary["score"] == pytest.approx(sum(e[0] for e in episodes) / len(episodes))
    assert summary["agent_exit_status"] == 0 and summary["env_exit_status"] == 0
    assert "exception timestep budget" in (r / "agent-stdout.txt").read_text()
    for name in ("log.csv", "agent-stderr.txt", "remote-stdout.txt", "remote-stderr.txt"):
        assert (r / name).exists(), name
    assert "6,000" in res.stdout and "ok" in res.stdout
    assert _no_process_mentions(str(r))


def test_cpuset_pins_both_halves(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "affinity_agent.py"),
                  "--timestep-limit", "300", "--cpuset", str(cpu), "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"cpus: {cpu}\n" in (r / "agent-stdout.txt").read_text()
    assert json.loads((r / "remote-status.json").read_text())["cpus"] == [cpu]
    assert json.loads((r / "summary.json").read_text())["cpuset"] == [cpu]


def test_eval_inside_a_project_subdirectory_runs_the_project(tmp_path):
    assert run_cli("new", "proj", "--template", "random", cwd=tmp_path).returncode == 0
    project = tmp_path / "proj"
    sub = project / "deeper"
    sub.mkdir()
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--timestep-limit", "300", "--json", cwd=sub)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    from contestkit.projects.project import load_project

    assert summary["agent"] == load_project(project).entry == "agent.main:main"  # not the bundled agent
    assert summary["ok"] and summary["timesteps"] == 300
    assert Path(summary["results_dir"]).resolve().parent == (project / "results").resolve()
    assert not (sub / "results").exists()


def test_bad_cpuset_is_refused_before_anything_starts(tmp_path):
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--cpuset", "9999", "--results-dir", str(r),
                  cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2
    assert "--cpuset '9999': CPU 9999 is not available here" in res.stderr
    assert "Traceback" not in res.stderr and not r.exists()


def test_crashing_agent_keeps_finished_episodes(tmp_path):
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "crashing_agent.py"),
                  "--timestep-limit", "20000", "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode == 1
    assert "exited with status 1" in res.stderr and "tensor shape mismatch" in res.stderr
    assert "Traceback" not in res.stderr.split("agent-stderr.txt")[0]
    assert len(read_monitor(r / "monitor.csv")) == 2
    summary = json.loads((r / "summary.json").read_text())
    assert summary["agent_exit_status"] == 1 and summary["ok"] is False and summary["episodes"] == 2


def test_agent_that_never_connects_does_not_hang(tmp_path):
    r = tmp_path / "r"
    # A run that hung would raise at run_cli's timeout, not return.
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "silent_agent.py"),
                  "--connect-timeout", "2", "--results-dir", str(r), cwd=tmp_path, timeout=120)  # fmt: skip
    assert res.returncode == 1
    assert "never connected" in res.stderr
    assert json.loads((r / "summary.json").read_text())["end_reason"] == "no-connection"


def test_agent_speaking_garbage_is_reported(tmp_path):
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "garbage_agent.py"),
                  "--results-dir", str(r), cwd=tmp_path, timeout=120)  # fmt: skip
    assert res.returncode == 1
    summary = json.loads((r / "summary.json").read_text())
    assert summary["end_reason"] == "bad-request" and "greeting" in summary["error"]
    assert summary["env_exit_status"] == 3


def test_module_function_agent_and_json(tmp_path):
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", "gym_agent_module:play",
                  "--timestep-limit", "1200", "--results-dir", str(r), "--json", cwd=AGENTS)  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["timesteps"] == 1200 and doc["game"] == GAME and doc["runtime"] == "local"
    assert "done: timestep budget" in (r / "agent-stdout.txt").read_text()


def test_existing_results_are_refused_then_forced(tmp_path):
    r = tmp_path / "r"
    args = ["eval", GAME, STATE, "--runtime", "local", "--timestep-limit", "300", "--results-dir", str(r)]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    before = (r / "summary.json").read_text()
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2 and "already holds results" in res.stderr and "--force" in res.stderr
    assert (r / "summary.json").read_text() == before
    assert run_cli(*args, "--force", cwd=tmp_path).returncode == 0


def test_several_levels_give_the_contest_score(tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text(f"game,state\n{GAME},{STATE}\n{GAME},{STATE}\n")
    r = tmp_path / "r"
    res = run_cli("eval", "--levels", str(levels), "--parallel", "2", "--runtime", "local",
                  "--timestep-limit", "1500", "--results-dir", str(r), "--json", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["levels"]) == 2
    dirs = sorted(p.name for p in r.iterdir() if p.is_dir())
    assert dirs == [f"{GAME}_{STATE}", f"{GAME}_{STATE}-2"]
    level_scores = []
    for d in dirs:
        eps = read_monitor(r / d / "monitor.csv")
        level_scores.append(sum(e[0] for e in eps) / len(eps) if eps else 0.0)
    assert doc["score"] == pytest.approx(sum(level_scores) / 2)


def test_bad_level_list_names_the_line(tmp_path):
    levels = tmp_path / "levels.csv"
    levels.write_text("game,state\nAirstriker-Genesis\n")
    res = run_cli("eval", "--levels", str(levels), cwd=tmp_path)
    assert res.returncode == 2 and "line 2" in res.stderr and "Traceback" not in res.stderr


def test_missing_rom_names_game_and_import_command(tmp_path):
    res = run_cli("eval", "SonicTheHedgehog-Genesis", "GreenHillZone.Act1", "--runtime", "local", cwd=tmp_path)
    assert res.returncode != 0
    assert "SonicTheHedgehog-Genesis" in res.stderr and "contestkit roms import" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_game_and_state_suggest_names(tmp_path):
    res = run_cli("eval", "SonicTheHedgehog", "GreenHillZone.Act1", cwd=tmp_path)
    assert res.returncode == 2 and "SonicTheHedgehog-Genesis" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("eval", "SonicTheHedgehog-Genesis", "GreenHilZone.Act1", cwd=tmp_path)
    assert res.returncode == 2 and "GreenHillZone.Act1" in res.stderr


def test_ctrl_c_stops_both_and_keeps_results(tmp_path, start_eval):
    r = tmp_path / "r"
    proc = start_eval(GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "slow_agent.py"),
                      "--results-dir", str(r), "--json", cwd=tmp_path)  # fmt: skip
    wait_for_progress(proc, r, "episodes", 1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((r / "summary.json").read_text())
    assert summary["end_reason"] == "interrupted"
    assert len(read_monitor(r / "monitor.csv")) >= 1
    assert "Traceback" not in err
    # --json still prints the summary of what finished, and the reward curve is drawn.
    assert json.loads(out)["episodes"] == summary["episodes"] >= 1
    assert (r / "reward-curve.svg").read_text().startswith("<svg")
    wait_until(
        lambda: _no_process_mentions(str(r)) and _no_process_mentions("slow_agent.py"),
        timeout=20,
        message="the env and agent processes to be gone",
    )


def test_an_agents_terminal_escapes_are_shown_not_obeyed(tmp_path):
    """An agent's output reaches the entrant's terminal through eval's "agent |" lines and its error
    cell: every escape and bidi control in it is written out (``\\x1b``), never sent raw."""
    r = tmp_path / "r"
    res = run_cli("eval", GAME, STATE, "--runtime", "local", "--agent", str(AGENTS / "escape_agent.py"),
                  "--timestep-limit", "300", "--results-dir", str(r), cwd=tmp_path)  # fmt: skip
    assert res.returncode != 0
    shown = res.stdout + res.stderr
    assert "\x1b" not in shown and "\u202e" not in shown and "\x07" not in shown
    assert "agent | hello \\x1b[2J\\x1b]52;c;ZXZpbA==\\x07" in shown
    assert "boom \\x1b[2J" in shown  # the crash, in the results table and the error line
