"""``contestkit eval``: parse, call :mod:`contestkit.evaluation`, show progress and the summary."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from contestkit import evaluation, levelrun, results
from contestkit.cli.output import console, err_console, print_json
from contestkit.config import find_project_file
from contestkit.curves import sparkline, write_level_curve
from contestkit.errors import ContestkitError, UsageError
from contestkit.levellist import read_levels


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


class _LiveView:
    """One progress row per level: timesteps of the budget, episodes, rewards, speed, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=16),
            TextColumn(
                "{task.completed:,.0f}/{task.total:,.0f} steps  ep {task.fields[episodes]}  "
                "last {task.fields[last]}  mean {task.fields[mean]}  {task.fields[tps]}/s  {task.fields[status]}"
            ),
            TimeElapsedColumn(),
            console=err_console,
            disable=not enabled,
            transient=False,
            refresh_per_second=4,
        )
        self.tasks: dict[int, TaskID] = {}
        self.lock = threading.Lock()
        self.started = False
        self.notice: str | None = None

    def stop(self) -> None:
        if self.started:
            self.progress.stop()

    def update(self, index: int, prog: evaluation.Progress) -> None:
        if not self.enabled:
            return
        with self.lock:
            if not self.started:  # only once something runs, so early errors print cleanly
                self.progress.start()
                self.started = True
                if self.notice:
                    self.progress.console.print(self.notice)
            if index not in self.tasks:
                self.tasks[index] = self.progress.add_task(
                    f"{prog.game} {prog.state}", total=prog.timestep_limit or 1,
                    episodes=0, last="-", mean="-", tps="0", status="starting",
                )  # fmt: skip
            self.progress.update(
                self.tasks[index],
                completed=prog.timesteps,
                total=prog.timestep_limit or None,
                episodes=prog.episodes,
                last=_fmt(prog.last_episode_reward),
                mean=_fmt(prog.mean_episode_reward),
                tps=f"{prog.timesteps_per_second:,.0f}",
                status=prog.status,
            )

    def agent_line(self, line: str) -> None:
        if self.enabled:
            self.progress.console.print(f"[dim]agent |[/] {escape(line)}", highlight=False, soft_wrap=True)


def _level_table(rows: list[evaluation.LevelResult]) -> Table:
    table = Table(title="Evaluation", title_justify="left")
    for col, just in (("level", "left"), ("episodes", "right"), ("timesteps", "right"),
                      ("score", "right"), ("rewards", "left"), ("status", "left")):  # fmt: skip
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        rewards = [rew for rew, _, _ in results.read_monitor(r.results_dir / results.MONITOR)]
        status = "[green]ok[/]" if r.ok else f"[red]{escape((r.error or 'failed').splitlines()[0])}[/]"
        table.add_row(f"{r.game} {r.state}", str(r.episodes), f"{r.timesteps:,}", _fmt(r.score, 2),
                      sparkline(rewards), status)  # fmt: skip
    return table


def eval_command(
    game: str | None = typer.Argument(None, help="Contest game, e.g. Airstriker-Genesis or SonicTheHedgehog-Genesis."),
    state: str | None = typer.Argument(None, help="Level (save state), e.g. Level1 or GreenHillZone.Act1."),
    runtime: str = typer.Option(
        "auto", "--runtime", help="auto: docker when an engine answers and there is an image, else local processes."
    ),
    agent: str | None = typer.Option(None, "--agent", help="Local runtime: the agent, PATH.py or MODULE:FUNC."),
    image: str | None = typer.Option(None, "--image", help="Docker runtime: the agent image."),
    timestep_limit: int = typer.Option(
        levelrun.TIMESTEP_LIMIT, "--timestep-limit", min=1, help="Timestep budget per level."
    ),
    wallclock_limit: float = typer.Option(
        levelrun.WALLCLOCK_LIMIT, "--wallclock-limit", min=1, help="Wall-clock budget per level, seconds."
    ),
    levels: Path | None = typer.Option(None, "--levels", help="CSV of levels (header game,state)."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="Levels evaluated at once."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed of the sticky frame skip."),
    record: bool = typer.Option(False, "--record", help="Record every episode as .bk2 under bk2/."),
    gpus: bool = typer.Option(False, "--gpus", help="Docker runtime: pass the GPUs to the agent."),
    cpus: float | None = typer.Option(
        None,
        "--cpus",
        help=f"Docker runtime: agent CPU limit (default {levelrun.CONTEST_CPUS:g}, the contest machine).",
    ),
    memory: str | None = typer.Option(
        None, "--memory", help=f"Docker runtime: agent memory limit (default {levelrun.CONTEST_MEMORY})."
    ),
    cpuset: str | None = typer.Option(
        None,
        "--cpuset",
        help="CPUs the env and the agent run on, e.g. 0-3 or 1. One CPU for both is the fastest bridge for a "
        "single-threaded agent on a VM.",
    ),
    results_dir: Path | None = typer.Option(None, "--results-dir", help="Where results go (default results/<time>)."),
    force: bool = typer.Option(False, "--force", help="Replace results already in --results-dir."),
    connect_timeout: float = typer.Option(
        levelrun.CONNECT_TIMEOUT, "--connect-timeout", min=1, help="Seconds the env waits for the agent to connect."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not stream the agent's output."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON document."),
) -> None:
    """Evaluate an agent on a contest level exactly as the evaluation server does."""
    if levels is None and game is None:
        raise UsageError("Name a GAME (and STATE), or pass --levels FILE.csv; `contestkit roms list` shows the games.")
    if levels is not None and game is not None:
        raise UsageError("Pass either GAME [STATE] or --levels FILE.csv, not both.")
    project_file = find_project_file()  # the agent project around here, found like git finds a repo
    project_dir = project_file.parent if project_file else None
    fresh_dir = None if results_dir else results.default_results_dir(project_dir / "results" if project_dir else None)
    run = levelrun.LevelRunSpec(
        game=game or "",
        state=state,
        agent=agent,
        image=image,
        timestep_limit=timestep_limit,
        wallclock_limit=wallclock_limit,
        seed=seed,
        record=record,
        gpus=gpus,
        cpus=cpus,
        cpuset=cpuset,
        memory=memory,
        connect_timeout=connect_timeout,
        project_dir=project_dir,
    )
    req = evaluation.EvalRequest(run=run, results_dir=results_dir or fresh_dir, runtime=runtime)
    view = _LiveView(enabled=not json_out)
    if agent is None and project_dir is None and image is None and runtime != "docker" and not json_out:
        view.notice = "[dim]No --agent and no agent project here: running the bundled contest random agent.[/]"
    on_output = None if (quiet or json_out) else view.agent_line
    interrupted = False
    try:
        try:
            if levels is not None:
                contest = evaluation.evaluate_levels(
                    req, read_levels(levels), parallel=parallel, force=force, on_progress=view.update
                )
                rows, score, root = contest.levels, contest.score, contest.results_dir
            else:
                one = evaluation.evaluate_level(
                    req, force=force, on_progress=lambda p: view.update(0, p), on_output=on_output
                )
                rows, score, root = [one], one.score, one.results_dir
        except KeyboardInterrupt:
            interrupted = True
        except ContestkitError:
            if fresh_dir is not None:  # the default directory made for this run, still empty
                with contextlib.suppress(OSError):
                    fresh_dir.rmdir()
            raise
    finally:
        view.stop()
    if interrupted:
        # What finished is kept and shown the same way: curves, and the summary for --json.
        root = Path(req.results_dir).absolute()
        summary = results.read_json(root / results.SUMMARY) or {}
        level_dirs = [root / name for name in sorted(results.contest_level_dirs(root))] or [root]
        for level_dir in level_dirs:
            _write_curve(level_dir)
        if json_out and summary:
            print_json({**summary, "results_dir": str(root)})
        err_console.print(
            f"[bold red]interrupted[/]: both halves stopped; finished episodes kept in {escape(str(root))}"
        )
        raise typer.Exit(130)
    for r in rows:
        _write_curve(r.results_dir)
    summary = results.read_json(root / results.SUMMARY) or {}
    if json_out:
        print_json({**summary, "results_dir": str(root)})
    else:
        console.print(_level_table(rows))
        if levels is not None:
            console.print(f"Contest score (mean of the levels' mean episode reward): [bold]{_fmt(score, 2)}[/]")
        console.print(f"Results in {escape(str(root))}")
        for r in rows:
            if r.error:
                err_console.print(f"[bold red]error[/] ({r.game} {r.state}): {escape(r.error)}", highlight=False)
    if not all(r.ok for r in rows):
        raise typer.Exit(1)


def _write_curve(level_dir: Path) -> None:
    """reward-curve.svg from the level's monitor.csv (the picture of its episodes)."""
    write_level_curve(level_dir)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
