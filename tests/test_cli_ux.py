"""A new user's first hour (issue 9): exit statuses, early one-sentence checks, narrow terminals.

Every CLI test runs the real command in a fresh process (the ``cli`` fixture); the rendering
tests draw the real table and progress line on a rich Console 80 columns wide.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from rich.console import Console

from contestkit.cli import eval_cmd
from contestkit.errors import EXIT_STATUS_RULE
from contestkit.projects.agentdeps import Requirement, cpu_indexes, index_reachable, install_argvs, install_command
from contestkit.runs.evaluation import LevelResult, Progress
from tests.support.paths import GAME, STATE

CRASH = (
    "The agent exited with status 1. Last lines of agent-stderr.txt:\nTraceback (most recent call last):\n"
    '  File "agent.py", line 13, in <module>\n    raise RuntimeError("agent bug: tensor shape mismatch")\n'
    "RuntimeError: agent bug: tensor shape mismatch"
)


def _one_sentence(stderr: str) -> None:
    assert stderr.startswith("error: ") and "Traceback" not in stderr, stderr


# -- exit statuses ----------------------------------------------------------------------------------


def test_usage_errors_exit_2_in_every_command_and_help_says_so(cli, tmp_path: Path) -> None:
    assert cli("build", cwd=tmp_path).returncode == 2  # outside a project: was 1, while eval's were 2
    assert cli("eval", cwd=tmp_path).returncode == 2
    assert cli("new", "Bad_Name", cwd=tmp_path).returncode == 2
    assert not (tmp_path / "results").exists()
    help_text = " ".join(cli("--help").stdout.split())
    assert EXIT_STATUS_RULE in help_text


def test_choice_options_suggest_the_nearest_valid_value(cli, tmp_path: Path) -> None:
    proc = cli("eval", "Airstriker-Genesis", "--runtime", "lcoal", cwd=tmp_path)
    assert proc.returncode == 2 and "Did you mean local?" in " ".join(proc.stderr.replace("│", " ").split())
    proc = cli("new", "x", "--template", "pytroch", cwd=tmp_path)
    assert proc.returncode == 2 and "Did you mean pytorch?" in " ".join(proc.stderr.split())
    _one_sentence(proc.stderr)
    assert not (tmp_path / "x").exists()


# -- checks before anything starts ------------------------------------------------------------------


def test_parallel_without_levels_is_refused(cli, tmp_path: Path) -> None:
    proc = cli("eval", GAME, STATE, "--parallel", "3", "--runtime", "local", cwd=tmp_path)
    assert proc.returncode == 2
    _one_sentence(proc.stderr)
    assert "--parallel 3" in proc.stderr and "--levels" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_failed_check_leaves_no_results_folder(cli, tmp_path: Path) -> None:
    proc = cli("eval", "Airstriker", "--runtime", "local", cwd=tmp_path)  # unknown game: found after the dir
    assert proc.returncode == 2 and "Did you mean Airstriker-Genesis" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # was: an empty results/
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old").mkdir()
    cli("eval", "Airstriker", "--runtime", "local", cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["old"]  # a results/ it did not make stays


def test_a_bad_row_of_a_levels_csv_is_named_by_its_line(cli, tmp_path: Path) -> None:
    (tmp_path / "levels.csv").write_text(f"game,state\n{GAME},{STATE}\n\n{GAME}\n")
    proc = cli("eval", "--levels", "levels.csv", "--runtime", "local", cwd=tmp_path)
    assert proc.returncode == 2
    _one_sentence(proc.stderr)
    assert "line 4" in " ".join(proc.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["levels.csv"]


def test_module_function_agent_that_does_not_resolve_is_one_sentence_before_start(cli, tmp_path: Path) -> None:
    proc = cli("eval", GAME, STATE, "--runtime", "local", "--agent", "no_such_agent_mod:main", cwd=tmp_path)
    assert proc.returncode == 2
    _one_sentence(proc.stderr)
    assert "no module no_such_agent_mod" in " ".join(proc.stderr.split())
    (tmp_path / "myagent.py").write_text("def run():\n    pass\n")
    proc = cli("eval", GAME, STATE, "--runtime", "local", "--agent", "myagent:main", cwd=tmp_path)
    assert proc.returncode == 2 and "defines no main" in " ".join(proc.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myagent.py"]


def test_agent_import_this_python_lacks_names_module_and_install_command(cli, tmp_path: Path) -> None:
    """The project's agent imports a distribution that is not installed (for real: no such package)."""
    assert cli("new", "proj", "--template", "random", cwd=tmp_path).returncode == 0
    project = tmp_path / "proj"
    main = project / "agent" / "main.py"
    main.write_text("import ck_missing_dist_xyz  # noqa: F401\n" + main.read_text())
    with open(project / "requirements.txt", "a") as f:
        f.write("ck-missing-dist-xyz==1.0\n")
    proc = cli("eval", GAME, STATE, "--runtime", "local", "--timestep-limit", "100", cwd=project)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    _one_sentence(proc.stderr)
    assert "imports ck_missing_dist_xyz" in said and "install ck-missing-dist-xyz==1.0" in said
    assert not (project / "results").exists()


def test_install_command_takes_the_cpu_build_of_torch_from_its_index() -> None:
    """Finding (README quick start pasted into a fresh clone): with ``--index-url`` the CPU index
    replaced the user's own, and torch's dependencies (filelock) were then found nowhere. It is an
    extra index now, and left out when it cannot be reached."""
    reqs = [Requirement("numpy", "numpy==2.4.6"), Requirement("torch", "torch==2.13.0")]
    argvs = install_argvs(reqs)
    assert argvs[0] == [sys.executable, "-m", "pip", "install", "torch==2.13.0", "--extra-index-url",
                        "https://download.pytorch.org/whl/cpu"]  # fmt: skip
    assert argvs[1][-1] == "numpy==2.4.6" and "--extra-index-url" not in argvs[1]
    assert "torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu && " in install_command(reqs)
    assert install_argvs(reqs, cpu_index=False)[0] == [sys.executable, "-m", "pip", "install", "torch==2.13.0"]
    assert cpu_indexes(reqs) == ["https://download.pytorch.org/whl/cpu"]
    assert cpu_indexes(reqs[:1]) == []


def test_an_index_that_does_not_answer_is_told_apart(free_port) -> None:
    """A real local HTTP server answers (even 404 counts: the host is there); a closed port does not."""
    import http.server
    import threading

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert index_reachable(f"http://127.0.0.1:{port}/whl/cpu", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert not index_reachable(f"http://127.0.0.1:{free_port()}/whl/cpu", timeout=2)


def test_new_names_what_this_python_lacks(cli, tmp_path: Path, base_env) -> None:
    """A template whose requirements this Python lacks: a template is copied from the checkout, so
    a copy of the random template with one more requirement stands in (CONTESTKIT's templates_root
    is found next to the package, hence the copied package tree)."""
    import shutil

    from tests.support.paths import REPO

    root = tmp_path / "checkout"
    shutil.copytree(REPO / "contestkit", root / "contestkit", ignore=shutil.ignore_patterns("__pycache__", "templates"))
    shutil.copytree(REPO / "templates", root / "templates", ignore=shutil.ignore_patterns("__pycache__"))
    with open(root / "templates" / "agent-random" / "requirements.txt", "a") as f:
        f.write("ck-missing-dist-xyz==1.0\n")
    env = base_env()
    env["PYTHONPATH"] = str(root)
    proc = cli("new", "proj", "--template", "random", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())
    assert "lacks ck-missing-dist-xyz" in said and "install ck-missing-dist-xyz==1.0" in said
    assert "numpy" not in said.split("lacks")[1].split("install")[0]  # installed: not named
    # --install runs that pip for real; no index holds this package, so it fails and says what to run.
    proc = cli("new", "proj2", "--template", "random", "--install", cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 1 and "pip could not install ck-missing-dist-xyz==1.0" in " ".join(proc.stderr.split())
    assert (tmp_path / "proj2" / "contestkit.yaml").is_file()  # the project is kept


# -- narrow terminals -------------------------------------------------------------------------------


def test_summary_table_fits_80_columns_and_shows_the_exception(tmp_path: Path) -> None:
    rows = [
        LevelResult("SonicAndKnuckles3-Genesis", "CarnivalNightZone.Act1", tmp_path, None, 2, 750, False, CRASH),
        LevelResult(GAME, STATE, tmp_path, 12345.5, 2, 1_000_000, True, None),
    ]
    (tmp_path / "monitor.csv").write_text("r,l,t\n10,100,1\n20,100,2\n30,100,3\n")
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(eval_cmd._level_table(rows, console.width, seed=1234))
    text = console.export_text()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert all(line.rstrip().endswith(("┓", "┃", "┩", "│", "┘")) for line in lines[1:]), text  # right edge drawn
    assert "RuntimeError:" in text and "mismatch" in text  # the exception itself, folded over lines
    assert "Last lines of" not in text and "…" not in text
    assert "seed 1234" in lines[0]
    # Each level on one line, the rewards' sparkline kept (the 80-column table used to drop it).
    row = next(line for line in lines if "Airstriker Level1" in line)
    assert "1M" in row and "rewards" in text and "▁▅█" in row


def test_summary_table_at_120_columns_keeps_each_level_on_one_line(tmp_path: Path) -> None:
    rows = [LevelResult(GAME, STATE, tmp_path, 12345.5, 2, 1_000_000, True, None)]
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(eval_cmd._level_table(rows, console.width))
    assert f"{GAME} {STATE}" in console.export_text()


def test_progress_line_fits_80_columns_with_its_elapsed_time(monkeypatch) -> None:
    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=True)
    monkeypatch.setattr(eval_cmd, "err_console", console)
    view = eval_cmd._LiveView(enabled=True)
    prog = Progress("SonicTheHedgehog2-Genesis", "EmeraldHillZone.Act1", status="running", timesteps=837)
    prog.timestep_limit, prog.episodes, prog.mean_episode_reward, prog.timesteps_per_second = 10**6, 2, 1234.5, 1234.0
    view.update(0, prog)
    view.stop()
    text = console.export_text()
    line = next(line for line in text.splitlines() if "Sonic2" in line)
    assert "Sonic2 EmeraldHill.Act1" in line and "837/1M" in line and "running" in line
    assert "0:00:0" in line and "…" not in line


# -- help and completion ----------------------------------------------------------------------------


def _all_help() -> str:
    """Every command's --help, rendered in this process (one subprocess each would take minutes)."""
    import typer.main
    from typer.testing import CliRunner

    from contestkit.cli import app
    from tests.test_cli_docs import _commands

    runner = CliRunner(env={"COLUMNS": "200"})
    paths = [path for path, _ in _commands(typer.main.get_command(app))]
    return "\n".join(runner.invoke(app, [*path, "--help"], prog_name="contestkit").output for path in [(), *paths])


def test_help_has_no_type_placeholders_and_lists_the_runtimes(cli) -> None:
    text = _all_help()
    for placeholder in ("<bool>", "<str>", "<int", "<float", "<path>", "<list"):
        assert placeholder not in text, placeholder
    assert "auto|docker|local" in text  # --runtime's choices
    assert "Usage: contestkit eval [OPTIONS] [GAME] [STATE]" in text
    assert "asks" not in cli("new", "--help").stdout


def _complete(cli, base_env, words: str) -> list[str]:
    env = base_env(_CONTESTKIT_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
    proc = cli(env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_shell_completion_offers_contest_games_first_states_and_templates(cli, base_env) -> None:
    assert "--install-completion" in cli("--help").stdout
    sonic = _complete(cli, base_env, "contestkit eval Son")
    assert sonic[:3] == ["SonicTheHedgehog-Genesis", "SonicTheHedgehog2-Genesis", "SonicAndKnuckles3-Genesis"]
    assert len(sonic) > 3  # the emulator's other games follow
    assert _complete(cli, base_env, "contestkit eval Airs") == ["Airstriker-Genesis"]
    assert "Level1" in _complete(cli, base_env, "contestkit eval Airstriker-Genesis L")
    assert _complete(cli, base_env, "contestkit new x --template t") == ["tf"]
