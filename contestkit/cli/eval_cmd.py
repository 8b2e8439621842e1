"""``contestkit eval``: parse, call :mod:`contestkit.runs.evaluation`, show progress and the summary."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from contestkit.cli.completion import complete_game, complete_state
from contestkit.cli.output import console, err_console, print_json, shown
from contestkit.env.games import short_level
from contestkit.env.levellist import read_levels
from contestkit.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TERMINATED, ContestkitError, UsageError
from contestkit.projects.config import find_project_file
from contestkit.runs import evaluation, levelrun, results
from contestkit.runs.curves import sparkline, write_level_curve
from contestkit.runtime.base import EvalRuntime
from contestkit.states import ProgressStatus


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


#: Below this many columns the progress line takes its compact form (short names, short numbers).
WIDE_COLUMNS = 110


def _short_count(n: float) -> str:
    """1,000,000 -> 1M, 20,000 -> 20k, 837 -> 837: budgets in a few characters."""
    for size, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            value = n / size
            return f"{value:.{0 if value >= 100 or value == int(value) else 1}f}{unit}"
    return f"{n:,.0f}"


class _LiveView:
    """One progress row per level: timesteps of the budget, episodes, rewards, speed, elapsed time.

    At 80 columns the full row would be cut at the terminal's edge (the elapsed time first), so a
    narrow terminal gets the compact row: ``Sonic2 EmeraldHill.Act1 ━━━━ 837/20k ep 2 mean 70.0 61/s``.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.narrow = err_console.width < WIDE_COLUMNS
        if self.narrow:
            text = (
                "{task.fields[done]}/{task.fields[budget]} ep {task.fields[episodes]} mean {task.fields[mean]} "
                "{task.fields[tps]}/s {task.fields[status]}"
            )
        else:
            text = (
                "{task.fields[done]}/{task.fields[budget]} steps  ep {task.fields[episodes]}  last {task.fields[last]}"
                "  mean {task.fields[mean]}  {task.fields[tps]}/s  {task.fields[status]}"
            )
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=8 if self.narrow else 16),
            TextColumn(text),
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
                name = short_level(prog.game, prog.state) if self.narrow else f"{prog.game} {prog.state}"
                self.tasks[index] = self.progress.add_task(
                    name, total=prog.timestep_limit or 1, done="0", budget="-",
                    episodes=0, last="-", mean="-", tps="0", status=ProgressStatus.STARTING,
                )  # fmt: skip
            count = _short_count if self.narrow else (lambda n: f"{n:,.0f}")
            self.progress.update(
                self.tasks[index],
                completed=prog.timesteps,
                total=prog.timestep_limit or None,
                done=count(prog.timesteps),
                budget=count(prog.timestep_limit) if prog.timestep_limit else "-",
                episodes=prog.episodes,
                last=_fmt(prog.last_episode_reward),
                mean=_fmt(prog.mean_episode_reward),
                tps=f"{prog.timesteps_per_second:,.0f}",
                status=prog.status,
            )

    def line(self, text: str) -> None:
        """A line of its own above the progress rows (or before them, when none has started)."""
        if self.enabled:
            with self.lock:
                (self.progress.console if self.started else err_console).print(text, highlight=False, soft_wrap=True)

    def agent_line(self, line: str) -> None:
        if self.enabled:
            # An agent's output is the team's text: its escapes are written out, never obeyed.
            self.progress.console.print(f"[dim]agent |[/] {shown(line)}", highlight=False, soft_wrap=True)


def _status_cell(result: evaluation.LevelResult) -> str:
    """ok, or what went wrong in a few lines: the first sentence and the last line of the log tail
    (for a crash, the exception itself), not the "Last lines of ..." heading that introduces it."""
    if result.ok:
        return "[green]ok[/]"
    first, _, tail = (result.error or "failed").partition("\n")
    first = first.split(" Last lines of ")[0]
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    return "[red]" + shown(first + (f"\n{last}" if last else "")) + "[/]"


#: The sparkline's width in the summary table: narrow enough that the table fits 80 columns.
SPARK_NARROW, SPARK_WIDE = 10, 24


def _level_table(rows: list[evaluation.LevelResult], width: int, seed: int | None = None) -> Table:
    """The summary table, titled with the run's seed (``--seed`` reproduces it). Below
    ``WIDE_COLUMNS`` it names levels the short way (``Airstriker Level1``), shortens the headings
    and the sparkline, so that at 80 columns every column, the sparkline included, fits on its line;
    a failure's message folds rather than being cut at the edge."""
    narrow = width < WIDE_COLUMNS
    title = "Evaluation" + (f", seed {seed}" if seed is not None else "")
    table = Table(title=title, title_justify="left")
    table.add_column("level", no_wrap=not narrow)  # narrow: a long name wraps at its space, never mid-word
    for col in ("eps", "steps", "score") if narrow else ("episodes", "timesteps", "score"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("rewards", no_wrap=True)
    table.add_column("status", overflow="fold")
    for r in rows:
        rewards = [rew for rew, _, _ in results.read_monitor(r.results_dir / results.MONITOR)]
        name = short_level(r.game, r.state) if narrow else f"{r.game} {r.state}"
        spark = sparkline(rewards, SPARK_NARROW if narrow else SPARK_WIDE)
        steps = _short_count(r.timesteps) if narrow else f"{r.timesteps:,}"
        table.add_row(name, str(r.episodes), steps, _fmt(r.score, 1 if narrow else 2), spark, _status_cell(r))
    return table


def _render_best(rows: list[evaluation.LevelResult]) -> list[Path]:
    """Each recorded level's best episode as MP4 (what ``eval --record`` leaves to watch); a level
    that cannot be rendered gets a warning, never a failed evaluation."""
    from contestkit.runs import replay

    videos = []
    for r in rows:
        try:
            found = replay.episodes(r.results_dir)
            if not found:
                continue
            best = replay.choose(found, replay.Pick.BEST.value)
            videos.append(replay.render(best, r.results_dir / replay.BEST_VIDEO).video)
        except ContestkitError as exc:
            err_console.print(f"[yellow]warning:[/] no video of {r.game} {r.state}: {escape(str(exc))}")
    return videos


def eval_command(
    game: str | None = typer.Argument(
        None,
        metavar="GAME",
        autocompletion=complete_game,
        help="Contest game, e.g. Airstriker-Genesis or SonicTheHedgehog-Genesis.",
    ),
    state: str | None = typer.Argument(
        None,
        metavar="STATE",
        autocompletion=complete_state,
        help="Level (save state), e.g. Level1 or GreenHillZone.Act1 (default: the game's first).",
    ),
    runtime: EvalRuntime = typer.Option(
        EvalRuntime.AUTO,
        "--runtime",
        help="auto: docker when an engine answers and there is an image, else local processes.",
    ),
    agent: str | None = typer.Option(
        None, "--agent", metavar="PATH.py|MODULE:FUNC", help="Local runtime: the agent (a script, or a function)."
    ),
    image: str | None = typer.Option(None, "--image", metavar="IMAGE", help="Docker runtime: the agent image."),
    timestep_limit: int = typer.Option(
        levelrun.TIMESTEP_LIMIT, "--timestep-limit", min=1, help="Timestep budget per level."
    ),
    wallclock_limit: float = typer.Option(
        levelrun.WALLCLOCK_LIMIT, "--wallclock-limit", min=1, help="Wall-clock budget per level, seconds."
    ),
    levels: Path | None = typer.Option(None, "--levels", help="CSV of levels (header game,state)."),
    parallel: int = typer.Option(1, "--parallel", min=1, help="With --levels: how many levels are evaluated at once."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed of the sticky frame skip."),
    record: bool = typer.Option(False, "--record", help="Record every episode as .bk2 under bk2/."),
    video: bool = typer.Option(
        True,
        "--video/--no-video",
        help="With --record: render the best episode to best-episode.mp4 (and a poster PNG) in the results; "
        "`contestkit replay` renders any other.",
    ),  # fmt: skip
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
    if parallel != 1 and levels is None:
        raise UsageError(
            f"--parallel {parallel} evaluates the levels of a --levels FILE.csv at once; one level runs alone, "
            "so drop --parallel or pass --levels."
        )
    level_list = read_levels(levels) if levels is not None else None  # a bad row: its line number, nothing made
    project_file = find_project_file()  # the agent project around here, found like git finds a repo
    project_dir = project_file.parent if project_file else None
    results_base = project_dir / "results" if project_dir else Path("results")
    made_base = not results_base.exists()
    run = levelrun.LevelRunSpec(  # before any directory is made: a bad --cpuset is refused here
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
    fresh_dir = None if results_dir else results.default_results_dir(results_base)
    req = evaluation.EvalRequest(run=run, results_dir=results_dir or fresh_dir, runtime=runtime)
    view = _LiveView(enabled=not json_out)
    said: set[str] = set()

    def on_start(planned: evaluation.RunPlan) -> None:
        """The first line names what is evaluated (once for all the levels of a --levels run)."""
        seed_text = "" if level_list is not None else f", seed {planned.spec.seed}"
        line = f"Evaluating with {escape(planned.source.describe())}{seed_text}"
        if planned.note:
            line = f"[yellow]note:[/] {escape(planned.note)}\n{line}"
        if line not in said:
            said.add(line)
            view.line(line)

    bundled = agent is None and project_dir is None and image is None and runtime is not EvalRuntime.DOCKER
    if bundled and not json_out:
        view.notice = "[dim]No --agent and no agent project here: running the bundled contest random agent.[/]"
    on_output = None if (quiet or json_out) else view.agent_line
    interrupted = False
    terminated = threading.Event()

    def on_sigterm(signum: int, frame: object) -> None:
        """SIGTERM (``timeout``, a process manager) stops the run as Ctrl-C does: both halves stopped,
        what finished kept; only the exit status (143) differs. A second one does not cut the stopping short."""
        if not terminated.is_set():
            terminated.set()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        try:
            if level_list is not None:
                contest = evaluation.evaluate_levels(
                    req, level_list, parallel=parallel, force=force, on_progress=view.update, on_start=on_start
                )
                rows, score, root = contest.levels, contest.score, contest.results_dir
            else:
                one = evaluation.evaluate_level(
                    req, force=force, on_progress=lambda p: view.update(0, p), on_output=on_output, on_start=on_start
                )
                rows, score, root = [one], one.score, one.results_dir
        except KeyboardInterrupt:
            interrupted = True
        except ContestkitError:
            if fresh_dir is not None:  # the default directory made for this run, still empty
                with contextlib.suppress(OSError):
                    fresh_dir.rmdir()
                    if made_base:  # and results/ itself, when this run made it: a failed check leaves nothing
                        results_base.rmdir()
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        view.stop()
    if interrupted:
        # What finished is kept and shown the same way: curves, and the summary for --json.
        root = Path(req.results_dir).absolute()
        summary = results.read_json(root / results.SUMMARY) or {}
        level_dirs = [root / name for name in sorted(results.contest_level_dirs(root))] or [root]
        for level_dir in level_dirs:
            write_level_curve(level_dir)
        if json_out and summary:
            print_json({**summary, "results_dir": str(root)})
        how = "terminated (SIGTERM)" if terminated.is_set() else "interrupted"
        err_console.print(f"[bold red]{how}[/]: both halves stopped; finished episodes kept in {escape(str(root))}")
        raise typer.Exit(EXIT_TERMINATED if terminated.is_set() else EXIT_INTERRUPTED)
    for r in rows:
        write_level_curve(r.results_dir)
    videos = _render_best(rows) if record and video else []
    summary = results.read_json(root / results.SUMMARY) or {}
    if json_out:
        print_json({**summary, "results_dir": str(root)})
    else:
        console.print(_level_table(rows, console.width, summary.get("seed")))
        if levels is not None:
            console.print(f"Contest score (mean of the levels' mean episode reward): [bold]{_fmt(score, 2)}[/]")
        for path in videos:
            console.print(f"Best episode: {escape(str(path))}", soft_wrap=True)
        console.print(f"Results in {escape(str(root))}")
        for r in rows:
            if r.error:
                err_console.print(f"[bold red]error[/] ({r.game} {r.state}): {shown(r.error)}", highlight=False)
    if not all(r.ok for r in rows):
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
