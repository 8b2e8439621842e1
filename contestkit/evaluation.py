"""Evaluate an agent on contest levels, as the evaluation server does, with any runtime.

This is the one place that decides how an evaluation goes: validate the level, prepare the
results directory, let the launcher start the two halves, watch them (progress, output, exit
statuses, budgets), stop them in order, and write ``summary.json``. The CLI, the benchmarks and
the contest server's evaluator all call :func:`evaluate_level` / :func:`evaluate_levels`.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contestkit import __version__, cpuset, results, scoring
from contestkit.errors import ContestkitError, UsageError
from contestkit.games import Level, resolve_level
from contestkit.runtime.base import Launcher, LaunchSpec, Session

POLL_SECONDS = 0.2
# After one half ends, how long the other gets to finish on its own before it is stopped.
AGENT_GRACE = 15.0
ENV_GRACE = 15.0
ENV_GRACE_UNCONNECTED = 2.0
# The runtime's own guard above the env's wall-clock budget, in case the env process hangs.
HARD_LIMIT_SLACK = 60.0

BUNDLED_AGENT = Path(__file__).parent / "data" / "random_agent.py"


@dataclass
class EvalRequest:
    """One level to evaluate and how."""

    game: str
    state: str | None
    results_dir: Path
    runtime: str = "auto"
    agent: str | None = None
    image: str | None = None
    timestep_limit: int = 1_000_000
    wallclock_limit: float = 43_200.0
    seed: int | None = None
    record: bool = False
    gpus: bool = False
    cpus: float | None = None
    cpuset: str | None = None  # Linux cpuset list, e.g. "0-3"; see contestkit.cpuset
    memory: str | None = None
    connect_timeout: float = 300.0
    project_dir: Path | None = None


@dataclass
class Progress:
    """A live view of one level's evaluation (what the progress table and the server show)."""

    game: str
    state: str
    status: str = "starting"
    timesteps: int = 0
    timestep_limit: int = 0
    episodes: int = 0
    last_episode_reward: float | None = None
    mean_episode_reward: float | None = None
    elapsed: float = 0.0
    timesteps_per_second: float = 0.0
    eta_seconds: float | None = None


@dataclass
class LevelResult:
    game: str
    state: str
    results_dir: Path
    score: float | None
    episodes: int
    timesteps: int
    ok: bool
    error: str | None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContestResult:
    score: float | None
    levels: list[LevelResult]
    results_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(level.ok for level in self.levels)


def read_levels(path: Path) -> list[tuple[str, str]]:
    """Levels from a csv with the header ``game,state`` (the contest's level lists)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets write a BOM
            rows = list(csv.reader(f))
    except OSError as exc:
        raise UsageError(f"Cannot read the level list {path}: {exc.strerror}.") from None
    except (UnicodeDecodeError, csv.Error):
        raise UsageError(f"{path} is not a CSV text file; a level list is a CSV with the header game,state.") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["game", "state"]:
        raise UsageError(f"{path}: the first line must be the header 'game,state'.")
    levels = []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"{path}, line {lineno}: expected 'game,state', got {','.join(row)!r}.")
        levels.append((row[0].strip(), row[1].strip()))
    if not levels:
        raise UsageError(f"{path} lists no levels under its 'game,state' header.")
    return levels


def _project_image(req: EvalRequest) -> str | None:
    """The image `contestkit build` tagged last in the agent project, if there is a project."""
    if req.project_dir is None:
        return None
    from contestkit.project import load_project

    return f"{load_project(req.project_dir).name}:latest"


def _image_exists(image: str) -> bool:
    from contestkit.images import image_present

    try:
        return image_present(image)
    except ContestkitError:  # no engine: nothing to run there
        return False


def choose_launcher(req: EvalRequest) -> Launcher:
    """``auto`` is Docker when an engine answers and there is an image to run, else local.

    The image to run is ``--image``, or the agent project's last build; a project never built
    runs locally (its entry point) rather than failing for want of an image.
    """
    runtime = req.runtime
    if runtime == "auto":
        runtime = "local"
        if req.agent is None and (req.image or req.project_dir):
            from contestkit.dockerengine import engine_available

            if engine_available() and (req.image or _image_exists(_project_image(req) or "")):
                runtime = "docker"
    if runtime == "local":
        from contestkit.runtime.local import LocalLauncher

        return LocalLauncher()
    if runtime == "docker":
        from contestkit.runtime.docker import DockerLauncher

        return DockerLauncher()
    raise UsageError(f"Unknown runtime '{req.runtime}': choose auto, docker or local.")


def _read_progress(level: Level, results_dir: Path, start: float, status: str) -> Progress:
    doc = results.read_json(results_dir / results.PROGRESS) or {}
    prog = Progress(game=level.game, state=level.state, status=status, elapsed=round(time.monotonic() - start, 1))
    for key in ("timesteps", "timestep_limit", "episodes", "last_episode_reward", "mean_episode_reward",
                "timesteps_per_second"):  # fmt: skip
        if key in doc:
            setattr(prog, key, doc[key])
    if prog.timesteps_per_second and prog.timestep_limit:
        prog.eta_seconds = round((prog.timestep_limit - prog.timesteps) / prog.timesteps_per_second, 1)
    return prog


class _OutputTail:
    """Follows the agent's stdout file so the terminal can show what the agent prints, live."""

    def __init__(self, path: Path, sink: Callable[[str], None] | None) -> None:
        self.path = path
        self.sink = sink
        self.offset = 0
        self.partial = ""

    def pump(self) -> None:
        if self.sink is None:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        if not data:
            return
        self.offset += len(data)
        text = self.partial + data.decode(errors="replace")
        *lines, self.partial = text.split("\n")
        for line in lines:
            self.sink(line)


def _agent_error(code: int, results_dir: Path) -> str:
    stderr_tail = results.tail(results_dir / results.AGENT_STDERR, 15).strip()
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    msg = f"The agent {how}."
    if stderr_tail:
        msg += f" Last lines of agent-stderr.txt:\n{stderr_tail}"
    return msg


def _watch(
    session: Session,
    spec: LaunchSpec,
    start: float,
    on_progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    output: _OutputTail,
) -> dict[str, Any]:
    """Run until both halves have ended; returns what happened, for the summary."""
    level = spec.level
    events: dict[str, Any] = {"stopped_agent": False, "stopped_env": False, "interrupted": False}
    env_ended_at = agent_ended_at = None
    hard_deadline = start + spec.wallclock_limit + HARD_LIMIT_SLACK
    try:
        while True:
            output.pump()
            env_code, agent_code = session.env_exit(), session.agent_exit()
            now = time.monotonic()
            if env_code is not None and env_ended_at is None:
                env_ended_at = now
            if agent_code is not None and agent_ended_at is None:
                agent_ended_at = now
            if env_code is not None and agent_code is not None:
                break
            if cancel is not None and cancel.is_set():
                events["interrupted"] = True
                session.stop_agent(3.0)
                session.stop_env(10.0)
                break
            if env_code not in (None, 0) and agent_code is None:
                # No session left to serve (a setup error, a bad agent, a crash): stop at once.
                events["stopped_agent"] = True
                session.stop_agent(2.0)
            elif env_ended_at is not None and agent_code is None and now - env_ended_at > AGENT_GRACE:
                events["stopped_agent"] = True
                session.stop_agent(5.0)
            if agent_ended_at is not None and env_code is None and now - agent_ended_at > _env_grace(spec):
                events["stopped_env"] = True
                session.stop_env(10.0)
            if now > hard_deadline:
                events["stopped_agent"] = events["stopped_env"] = True
                session.stop_agent(3.0)
                session.stop_env(10.0)
            if on_progress is not None:
                on_progress(_read_progress(level, spec.results_dir, start, "running"))
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        events["interrupted"] = True
        session.stop_agent(3.0)
        session.stop_env(10.0)
    output.pump()
    events["env_exit"] = session.env_exit()
    events["agent_exit"] = session.agent_exit()
    return events


def _env_grace(spec: LaunchSpec) -> float:
    """How long the env may go on after the agent ended.

    An env that never served a step (no progress.json yet) is only waiting for a connection that
    cannot come any more: it does not need the whole grace.
    """
    return ENV_GRACE if (spec.results_dir / results.PROGRESS).exists() else ENV_GRACE_UNCONNECTED


_BUDGET_ENDS = ("timestep-budget", "wallclock-budget")
_ENV_REPORTED_FAULTS = ("bad-request", "agent-disconnected-mid-step", "no-connection", "env-error")


def _summarize(
    spec: LaunchSpec, runtime: str, events: dict[str, Any], started_at: float, wall: float
) -> dict[str, Any]:
    rd = spec.results_dir
    env_status = results.read_json(rd / results.ENV_STATUS) or {}
    episodes = results.read_monitor(rd / results.MONITOR)
    rewards = [r for r, _, _ in episodes]
    score = scoring.level_score(rewards)
    end_reason = env_status.get("end_reason")
    agent_code, env_code = events.get("agent_exit"), events.get("env_exit")
    error: str | None = None
    if events.get("interrupted"):
        end_reason = "interrupted"
        error = "Interrupted before the budget ran out; the finished episodes are kept."
    elif end_reason == "setup-error":
        error = env_status.get("error")
    elif env_status.get("error") and end_reason in _ENV_REPORTED_FAULTS:
        # The env saw what went wrong (garbage, no connection, a crash of the emulator); the
        # agent's exit status after being stopped would only hide that.
        error = f"{env_status['error'][0].upper()}{env_status['error'][1:]}."
    elif not env_status:
        # The env crashed: whatever the agent did next (waiting, then being stopped) follows from it.
        tail = results.tail(rd / results.REMOTE_STDERR, 15).strip()
        error = f"The env process exited with status {env_code} before reporting." + (
            f" Last lines of remote-stderr.txt:\n{tail}" if tail else ""
        )
    elif agent_code not in (0, None) and not (events.get("stopped_agent") and end_reason in _BUDGET_ENDS):
        error = _agent_error(agent_code, rd)
    elif end_reason == "stopped" and not env_status.get("timesteps"):
        error = (
            f"The agent exited (status {agent_code}) without taking a single step; "
            "does it open RemoteEnv('tmp/sock') and step it?"
        )
    warnings = []
    if events.get("stopped_agent") and end_reason in ("timestep-budget", "wallclock-budget"):
        warnings.append(f"the agent did not exit within {AGENT_GRACE:g} s of its budget running out and was stopped")
    return {
        "game": spec.level.game,
        "state": spec.level.state,
        "runtime": runtime,
        "agent": spec.agent,
        "image": spec.image,
        "cpuset": list(spec.cpuset) if spec.cpuset else None,
        "episodes": len(rewards),
        "timesteps": env_status.get("timesteps", sum(length for _, length, _ in episodes)),
        "score": score,
        "mean_episode_reward": score,
        "wall_seconds": round(wall, 3),
        "agent_exit_status": agent_code,
        "env_exit_status": env_code,
        "end_reason": end_reason,
        "ok": error is None,
        "error": error,
        "warnings": warnings,
        "budgets": {
            "timestep_limit": spec.timestep_limit,
            "wallclock_limit": spec.wallclock_limit,
            "timesteps_used": env_status.get("timesteps"),
            "wall_seconds_used": env_status.get("wall_seconds"),
        },
        "seed": spec.seed,
        "started_at": started_at,
        "contestkit_version": __version__,
    }


def default_agent(req: EvalRequest) -> str:
    """The agent to run locally: ``--agent``, else the project's entry, else the bundled example."""
    if req.agent:
        return req.agent
    if req.project_dir is not None:
        from contestkit.project import load_project

        entry = load_project(req.project_dir).entry
        if entry:
            return entry if ":" in entry else str(Path(req.project_dir) / entry)
    return str(BUNDLED_AGENT)


_DOCKER_ONLY = (("image", "--image"), ("gpus", "--gpus"), ("cpus", "--cpus"), ("memory", "--memory"))


def plan(req: EvalRequest, level: Level) -> tuple[Launcher, LaunchSpec]:
    """Check everything a user can get wrong and say how the level will run; touches nothing.

    Every user error surfaces here, before a results directory is created or (with --force)
    emptied, so a typo never costs earlier results.
    """
    cpus = cpuset.parse(req.cpuset) if req.cpuset is not None else None
    launcher = choose_launcher(req)
    if launcher.name == "local":
        given = [flag for attr, flag in _DOCKER_ONLY if getattr(req, attr)]
        if given:
            why = "no Docker engine answers" if req.runtime == "auto" else "this is the local runtime"
            raise UsageError(
                f"{' and '.join(given)} only apply to the Docker runtime, and {why}: "
                "drop them, or start Docker and pass --runtime docker."
            )
    agent = default_agent(req) if launcher.name == "local" else req.agent
    image = req.image
    if launcher.name == "docker" and image is None:
        image = _project_image(req)
    if launcher.name == "local" and ":" not in agent and not Path(agent).is_file():
        raise UsageError(f"Agent script {agent} does not exist; pass --agent PATH.py or MODULE:FUNCTION.")
    spec = LaunchSpec(
        level=level,
        results_dir=Path(req.results_dir).absolute(),
        timestep_limit=req.timestep_limit,
        wallclock_limit=req.wallclock_limit,
        seed=req.seed,
        record=req.record,
        connect_timeout=req.connect_timeout,
        agent=agent,
        image=image,
        project_dir=req.project_dir,
        gpus=req.gpus,
        cpus=req.cpus,
        cpuset=cpus,
        memory=req.memory,
    )
    launcher.check(spec)
    return launcher, spec


def evaluate_level(
    req: EvalRequest,
    *,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_output: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    level: Level | None = None,
) -> LevelResult:
    """Evaluate one level. User errors raise ContestkitError before anything starts; once the
    halves run, every ending (crash, budget, Ctrl-C) is written to summary.json and returned."""
    level = level or resolve_level(req.game, req.state)
    launcher, spec = plan(req, level)
    # Only now, with every input checked, is the results directory touched (--force included).
    results_dir = results.prepare(spec.results_dir, force=force)
    started_at = time.time()
    start = time.monotonic()
    if on_progress is not None:
        on_progress(Progress(game=level.game, state=level.state, status="starting", timestep_limit=req.timestep_limit))
    session: Session | None = None
    events: dict[str, Any] = {}
    interrupted = False
    try:
        session = launcher.start(spec)
    except ContestkitError:
        # Nothing ran: a summary would claim a result and lock the directory against a retry.
        results.discard_setup(results_dir)
        raise
    try:
        output = _OutputTail(results_dir / results.AGENT_STDOUT, on_output)
        events = _watch(session, spec, start, on_progress, cancel, output)
    except KeyboardInterrupt:
        interrupted = True
        events["interrupted"] = True
    finally:
        if session is not None:
            session.close()
        summary = _summarize(spec, launcher.name, events, started_at, time.monotonic() - start)
        results.write_json(results_dir / results.SUMMARY, summary)
    result = LevelResult(
        game=level.game,
        state=level.state,
        results_dir=results_dir,
        score=summary["score"],
        episodes=summary["episodes"],
        timesteps=summary["timesteps"] or 0,
        ok=summary["ok"],
        error=summary["error"],
        summary=summary,
    )
    if on_progress is not None:
        final = _read_progress(level, results_dir, start, "done" if result.ok else "failed")
        on_progress(final)
    if interrupted or (events.get("interrupted") and cancel is None):
        raise KeyboardInterrupt
    return result


def evaluate_levels(
    base: EvalRequest,
    levels: list[tuple[str, str]],
    *,
    parallel: int = 1,
    force: bool = False,
    on_progress: Callable[[int, Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> ContestResult:
    """Evaluate several levels (a separate agent per level, as on the server) and score them.

    Levels are checked up front so a typo on line 9 does not surface after eight hours; one
    level's failure does not stop the others.
    """
    resolved = [resolve_level(game, state) for game, state in levels]
    plan(base, resolved[0])  # runtime, agent, options: a mistake fails once, before any level starts
    root = results.prepare(Path(base.results_dir), force=force)
    cancel = cancel or threading.Event()

    slugs: list[str] = []
    for level in resolved:  # the same level twice gets two directories
        slug, n = level.slug, 1
        while slug in slugs:
            n += 1
            slug = f"{level.slug}-{n}"
        slugs.append(slug)

    def run(index: int, level: Level) -> LevelResult:
        req = EvalRequest(**{**asdict(base), "game": level.game, "state": level.state,
                             "results_dir": root / slugs[index]})  # fmt: skip
        cb = (lambda prog: on_progress(index, prog)) if on_progress else None
        if cancel.is_set():
            return LevelResult(level.game, level.state, req.results_dir, None, 0, 0, False, "Not started: interrupted.")
        try:
            return evaluate_level(req, force=force, on_progress=cb, cancel=cancel, level=level)
        except ContestkitError as exc:
            return LevelResult(level.game, level.state, req.results_dir, None, 0, 0, False, str(exc))

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(run, i, lv) for i, lv in enumerate(resolved)]
        try:
            while not all(f.done() for f in futures):
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            cancel.set()
            for f in futures:
                f.result()
            _write_contest_summary(root, [f.result() for f in futures])
            raise
        level_results = [f.result() for f in futures]
    summary = _write_contest_summary(root, level_results)
    return ContestResult(score=summary["score"], levels=level_results, results_dir=root, summary=summary)


def _write_contest_summary(root: Path, level_results: list[LevelResult]) -> dict[str, Any]:
    summary = {
        "score": scoring.contest_score(r.score for r in level_results),
        "levels": [
            {
                "game": r.game,
                "state": r.state,
                "score": r.score,
                "episodes": r.episodes,
                "timesteps": r.timesteps,
                "ok": r.ok,
                "error": r.error,
                "results_dir": os.path.relpath(r.results_dir, root),
            }
            for r in level_results
        ],
        "levels_without_episodes": [f"{r.game} {r.state}" for r in level_results if r.score is None],
        "contestkit_version": __version__,
    }
    results.write_json(root / results.SUMMARY, summary)
    return summary
