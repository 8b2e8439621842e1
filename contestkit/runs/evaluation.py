"""Evaluate an agent on contest levels, as the evaluation server does, with any runtime.

This is the one place that decides how an evaluation goes: validate the level, prepare the
results directory, let the launcher start the two halves, watch them (progress, output, exit
statuses, budgets), stop them in order, and write ``summary.json``. The CLI, the benchmarks and
the contest server's evaluator all call :func:`evaluate_level` / :func:`evaluate_levels`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contestkit import __version__
from contestkit.bridge.protocol import EndReason, Fault
from contestkit.env import scoring
from contestkit.env.games import Level, resolve_level
from contestkit.env.seeds import draw_seed, level_seed
from contestkit.errors import ContestkitError, UsageError
from contestkit.runs import results
from contestkit.runs.levelrun import LevelRunSpec, docker_only_given, given_outside
from contestkit.runs.provenance import Source
from contestkit.runtime.base import Launcher, Runtime, Session
from contestkit.states import ProgressStatus

POLL_SECONDS = 0.2
OUT_CHECK_SECONDS = 2.0  # how often the agent's out/ is measured against the spec's out_limit
# After one half ends, how long the other gets to finish on its own before it is stopped.
AGENT_GRACE = 15.0
ENV_GRACE = 15.0
ENV_GRACE_UNCONNECTED = 2.0
# The runtime's own guard above the env's wall-clock budget, in case the env process hangs.
HARD_LIMIT_SLACK = 60.0

BUNDLED_AGENT = Path(__file__).parent.parent / "data" / "random_agent.py"


@dataclass(frozen=True)
class EvalRequest:
    """A level-run to evaluate, and what only an evaluation decides: the runtime and where results go.

    ``run.game`` / ``run.state`` name the level as the user typed it (with ``--levels``, the first
    level's; each level gets its own spec); :func:`plan` resolves them and fills in the agent or
    image the runtime needs.
    """

    run: LevelRunSpec
    results_dir: Path
    runtime: Runtime | str = Runtime.AUTO


@dataclass
class Progress:
    """A live view of one level's evaluation (what the progress table and the server show)."""

    game: str
    state: str
    status: ProgressStatus = ProgressStatus.STARTING
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

    @classmethod
    def from_summary(cls, game: str, state: str, results_dir: Path, summary: dict[str, Any]) -> LevelResult:
        """The result a ``summary.json`` document describes (every executor reports a level this way)."""
        return cls(
            game=game,
            state=state,
            results_dir=results_dir,
            score=summary["score"],
            episodes=summary["episodes"],
            timesteps=summary["timesteps"] or 0,
            ok=summary["ok"],
            error=summary["error"],
            summary=summary,
        )


@dataclass
class ContestResult:
    score: float | None
    levels: list[LevelResult]
    results_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(level.ok for level in self.levels)


def _project_image(run: LevelRunSpec) -> str | None:
    """The image `contestkit build` tagged last in the agent project, if there is a project."""
    if run.project_dir is None:
        return None
    from contestkit.projects.project import load_project

    return f"{load_project(run.project_dir).name}:latest"


def _image_exists(image: str) -> bool:
    from contestkit.containers.images import image_present

    try:
        return image_present(image)
    except ContestkitError:  # no engine: nothing to run there
        return False


@dataclass(frozen=True)
class RuntimeChoice:
    """The runtime an evaluation runs in, and why when the choice could surprise (``note``)."""

    name: Runtime
    note: str | None = None
    image_attrs: dict[str, Any] | None = None  # the project image, inspected while choosing


def _project_staleness(run: LevelRunSpec) -> tuple[dict[str, Any] | None, list[str]]:
    """The project image as inspected, and the project's files newer than its last build."""
    from contestkit.projects.project import load_project
    from contestkit.runs import provenance

    image = _project_image(run)
    attrs = provenance.inspect(image) if image else None
    if attrs is None or run.project_dir is None:
        return attrs, []
    project = load_project(run.project_dir)
    try:
        dockerfile = project.dockerfile.resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        dockerfile = "Dockerfile"
    return attrs, provenance.stale_files(project.root, attrs, dockerfile)


def choose_runtime(req: EvalRequest) -> RuntimeChoice:
    """``auto`` is Docker when an engine answers and there is an image to run, else local.

    The image to run is ``--image``, or the agent project's last build; a project never built
    runs locally (its entry point) rather than failing for want of an image. When the project's
    files that go into the image changed since that build, ``auto`` evaluates the working tree
    locally (what was just changed, not an old image) and says so; ``--runtime docker`` runs the
    old image on purpose, ``contestkit build`` first makes the image current.
    """
    from contestkit.runs import provenance

    run = req.run
    choices = [r for r in Runtime if r is not Runtime.KUBERNETES]
    try:
        runtime = Runtime(str(req.runtime))
    except ValueError:
        runtime = None
    if runtime not in choices:
        raise UsageError(f"Unknown runtime '{req.runtime}': choose {', '.join(choices)}.")
    project_image = run.image is None and run.project_dir is not None and run.agent is None
    if runtime is Runtime.AUTO:
        if run.agent is None and run.image:
            from contestkit.containers.dockerengine import engine_available

            return RuntimeChoice(Runtime.DOCKER if engine_available() else Runtime.LOCAL)
        if not project_image:
            return RuntimeChoice(Runtime.LOCAL)
        from contestkit.containers.dockerengine import engine_available

        if not engine_available():
            return RuntimeChoice(Runtime.LOCAL)
        attrs, stale = _project_staleness(run)
        if attrs is None:
            return RuntimeChoice(Runtime.LOCAL)
        if stale:
            return RuntimeChoice(
                Runtime.LOCAL,
                f"{provenance.name_files(stale)} changed since `contestkit build` made {_project_image(run)}, so "
                "this evaluates the working tree with local processes; run `contestkit build` to evaluate the "
                "image, or pass --runtime docker to evaluate the old one.",
                attrs,
            )
        return RuntimeChoice(Runtime.DOCKER, None, attrs)
    if runtime is Runtime.DOCKER and project_image:
        attrs, stale = _project_staleness(run)
        if stale:
            return RuntimeChoice(
                Runtime.DOCKER,
                f"{provenance.name_files(stale)} changed since `contestkit build` made {_project_image(run)}: "
                "this evaluates that older image (--runtime docker); run `contestkit build` to include them.",
                attrs,
            )
        return RuntimeChoice(Runtime.DOCKER, None, attrs)
    return RuntimeChoice(runtime)


def _launcher(name: Runtime) -> Launcher:
    if name is Runtime.LOCAL:
        from contestkit.runtime.local import LocalLauncher

        return LocalLauncher()
    from contestkit.runtime.docker import DockerLauncher

    return DockerLauncher()


def choose_launcher(req: EvalRequest) -> Launcher:
    """The launcher of :func:`choose_runtime`'s choice."""
    return _launcher(choose_runtime(req).name)


def _read_progress(spec: LevelRunSpec, results_dir: Path, start: float, status: ProgressStatus) -> Progress:
    doc = results.read_json(results_dir / results.PROGRESS) or {}
    prog = Progress(game=spec.game, state=spec.state or "", status=status, elapsed=round(time.monotonic() - start, 1))
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


def _watch_session(
    session: Session,
    spec: LevelRunSpec,
    results_dir: Path,
    start: float,
    on_progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    output: _OutputTail,
) -> dict[str, Any]:
    """Run until both halves have ended; returns what happened, for the summary.

    The budget clock starts at ``start``, or, for a session with ``budget_start()`` (a pod), when that
    says both halves run: a session still waiting is not charged, and bounds its own wait."""
    events: dict[str, Any] = {"stopped_agent": False, "stopped_env": False, "interrupted": False}
    env_ended_at = agent_ended_at = None
    out_checked = 0.0
    budget_start = getattr(session, "budget_start", None)
    began: float | None = start if budget_start is None else None
    try:
        while True:
            if began is None:
                began = budget_start()  # type: ignore[misc]
            hard_deadline = float("inf") if began is None else began + spec.wallclock_limit + HARD_LIMIT_SLACK
            output.pump()
            if time.monotonic() - out_checked >= OUT_CHECK_SECONDS:
                out_checked = time.monotonic()
                over = over_out_limit(spec, results_dir)
                if over is not None:
                    events["limit"] = over
                    events["stopped_agent"] = events["stopped_env"] = True
                    session.stop_agent(1.0)
                    session.stop_env(10.0)
                    shutil.rmtree(results_dir / results.AGENT_OUT, ignore_errors=True)  # give the disk back
                    break
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
            if agent_ended_at is not None and env_code is None and now - agent_ended_at > _env_grace(results_dir):
                events["stopped_env"] = True
                session.stop_env(10.0)
            if now > hard_deadline:
                events["stopped_agent"] = events["stopped_env"] = True
                session.stop_agent(3.0)
                session.stop_env(10.0)
            if on_progress is not None:
                on_progress(_read_progress(spec, results_dir, start, ProgressStatus.RUNNING))
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        events["interrupted"] = True
        session.stop_agent(3.0)
        session.stop_env(10.0)
    output.pump()
    events["env_exit"] = session.env_exit()
    events["agent_exit"] = session.agent_exit()
    return events


def over_out_limit(spec: LevelRunSpec, results_dir: Path) -> str | None:
    """The sentence that ends a level whose agent wrote more than ``spec.out_limit`` into out/; None
    while it is within it (checked every ``OUT_CHECK_SECONDS``, so it may overshoot by that much)."""
    used = results.disk_usage(results_dir / results.AGENT_OUT, stop_above=spec.out_limit)
    if used <= spec.out_limit:
        return None
    return (
        f"The agent wrote more than {spec.out_limit / 2**20:.0f} MiB into its out/ directory (the host's "
        "agent_out_limit), so the level was stopped and out/ emptied; write less to out/."
    )


def _env_grace(results_dir: Path) -> float:
    """How long the env may go on after the agent ended.

    An env that never served a step (no progress.json yet) is only waiting for a connection that
    cannot come any more: it does not need the whole grace.
    """
    return ENV_GRACE if (results_dir / results.PROGRESS).exists() else ENV_GRACE_UNCONNECTED


def _summarize_level(
    spec: LevelRunSpec, rd: Path, runtime: str, events: dict[str, Any], started_at: float, wall: float
) -> dict[str, Any]:
    """``summary.json`` of a level-run from its results directory and what the watch saw: one
    classification of how it ended (agent fault, budget, env fault) for every runtime and executor."""
    env_status = results.read_json(rd / results.ENV_STATUS) or {}
    episodes = results.read_monitor(rd / results.MONITOR)
    rewards = [r for r, _, _ in episodes]
    score = scoring.level_score(rewards)
    reported = env_status.get("end_reason")
    end_reason = EndReason.read(reported)
    fault = end_reason.fault if end_reason is not None else None
    agent_code, env_code = events.get("agent_exit"), events.get("env_exit")
    error: str | None = None
    if events.get("limit"):
        error = events["limit"]  # a host limit the agent went over (out/): the team's failure
    elif events.get("interrupted"):
        end_reason, fault = EndReason.INTERRUPTED, EndReason.INTERRUPTED.fault
        error = "Interrupted before the budget ran out; the finished episodes are kept."
    elif end_reason is EndReason.SETUP_ERROR:
        error = env_status.get("error")
    elif env_status.get("error") and fault in (Fault.AGENT, Fault.ENV):
        # The env saw what went wrong (garbage, no connection, a crash of the emulator); the
        # agent's exit status after being stopped would only hide that.
        error = f"{env_status['error'][0].upper()}{env_status['error'][1:]}."
    elif not env_status:
        # The env crashed: whatever the agent did next (waiting, then being stopped) follows from it.
        tail = results.tail(rd / results.REMOTE_STDERR, 15).strip()
        error = f"The env process exited with status {env_code} before reporting." + (
            f" Last lines of remote-stderr.txt:\n{tail}" if tail else ""
        )
    elif agent_code not in (0, None) and not (events.get("stopped_agent") and fault is Fault.BUDGET):
        error = _agent_error(agent_code, rd)
    elif end_reason is EndReason.STOPPED and not env_status.get("timesteps"):
        error = (
            f"The agent exited (status {agent_code}) without taking a single step; "
            "does it open RemoteEnv('tmp/sock') and step it?"
        )
    warnings = []
    if events.get("stopped_agent") and fault is Fault.BUDGET:
        warnings.append(f"the agent did not exit within {AGENT_GRACE:g} s of its budget running out and was stopped")
    return {
        "game": spec.game,
        "state": spec.state,
        "runtime": runtime,
        "agent": spec.agent,
        "image": spec.image,
        "cpuset": list(spec.cpuset.cpus) if spec.cpuset else None,
        "episodes": len(rewards),
        "timesteps": env_status.get("timesteps", sum(length for _, length, _ in episodes)),
        "score": score,
        "mean_episode_reward": score,
        "wall_seconds": round(wall, 3),
        "agent_exit_status": agent_code,
        "env_exit_status": env_code,
        "end_reason": end_reason if end_reason is not None else reported,
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


def default_agent(run: LevelRunSpec) -> str:
    """The agent to run locally: ``--agent``, else the project's entry, else the bundled example."""
    if run.agent:
        return run.agent
    if run.project_dir is not None:
        from contestkit.projects.project import load_project

        entry = load_project(run.project_dir).entry
        if entry:
            return entry if ":" in entry else str(Path(run.project_dir) / entry)
    return str(BUNDLED_AGENT)


@dataclass(frozen=True)
class RunPlan:
    """How a level will run: the launcher, the resolved spec (seed drawn), what it evaluates, and
    a note when the runtime was chosen in a way that could surprise."""

    launcher: Launcher
    spec: LevelRunSpec
    source: Source
    note: str | None = None


def plan_run(req: EvalRequest, level: Level) -> RunPlan:
    """Check everything a user can get wrong and say how the level will run; touches nothing.

    Every user error surfaces here, before a results directory is created or (with --force)
    emptied, so a typo never costs earlier results. The spec returned names the resolved level,
    the agent or image the chosen runtime runs, and the seed (drawn here when none was given, so
    that every run can be reproduced with ``--seed``).
    """
    from contestkit.runs import provenance

    run = req.run
    choice = choose_runtime(req)
    launcher = _launcher(choice.name)
    if launcher.name is Runtime.LOCAL:
        given = docker_only_given(run)  # the fields the spec marks Docker-only, set away from their default
        if given:
            why = "this is the local runtime"
            if req.runtime == Runtime.AUTO:
                why = "the project changed since its image was built" if choice.note else "no Docker engine answers"
            raise UsageError(
                f"{' and '.join(given)} only apply to the Docker runtime, and {why}: "
                "drop them, or start Docker and pass --runtime docker."
            )
    refuse_unhonoured(launcher, run)
    agent = default_agent(run) if launcher.name is Runtime.LOCAL else run.agent
    image = run.image
    if launcher.name is Runtime.DOCKER and image is None:
        image = _project_image(run)
    if launcher.name is Runtime.LOCAL and ":" not in agent and not Path(agent).is_file():
        raise UsageError(f"Agent script {agent} does not exist; pass --agent PATH.py or MODULE:FUNCTION.")
    spec = run.replace(game=level.game, state=level.state, agent=agent, image=image, seed=draw_seed(run.seed))
    launcher.check(spec)
    if launcher.name is Runtime.LOCAL:
        source = provenance.local_source(agent, run.project_dir)
    else:
        attrs = choice.image_attrs if image == _project_image(run) and choice.image_attrs else None
        source = provenance.image_source(launcher.name, image or "", attrs or provenance.inspect(image or ""))
    return RunPlan(launcher, spec, source, choice.note)


def plan(req: EvalRequest, level: Level) -> tuple[Launcher, LevelRunSpec]:
    """:func:`plan_run`'s launcher and spec."""
    planned = plan_run(req, level)
    return planned.launcher, planned.spec


def evaluate_level(
    req: EvalRequest,
    *,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_output: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    level: Level | None = None,
    on_start: Callable[[RunPlan], None] | None = None,
) -> LevelResult:
    """Evaluate one level. User errors raise ContestkitError before anything starts; once the
    halves run, every ending (crash, budget, Ctrl-C) is written to summary.json and returned.
    ``on_start`` hears what is evaluated (runtime, image or code, seed) before anything runs."""
    level = level or resolve_level(req.run.game, req.run.state)
    planned = plan_run(req, level)
    launcher, spec = planned.launcher, planned.spec
    # Only now, with every input checked, is the results directory touched (--force included).
    results_dir = results.prepare(Path(req.results_dir).absolute(), force=force)
    if on_start is not None:
        on_start(planned)
    if on_progress is not None:
        on_progress(
            Progress(
                game=level.game, state=level.state, status=ProgressStatus.STARTING, timestep_limit=spec.timestep_limit
            )
        )
    try:
        session = launcher.start(spec, results_dir)
    except ContestkitError:
        # Nothing ran: a summary would claim a result and lock the directory against a retry.
        results.discard_setup(results_dir)
        raise
    summary, events = _run_session(
        launcher.name, session, spec, results_dir, on_progress, on_output, cancel,
        extra={"source": planned.source.to_json()},
    )  # fmt: skip
    result = LevelResult.from_summary(level.game, level.state, results_dir, summary)
    if on_progress is not None:
        began = time.monotonic() - float(summary["wall_seconds"])
        final = _read_progress(spec, results_dir, began, ProgressStatus.DONE if result.ok else ProgressStatus.FAILED)
        on_progress(final)
    if events.get("keyboard") or (events.get("interrupted") and cancel is None):
        raise KeyboardInterrupt
    return result


def _reset_results(results_dir: Path) -> None:
    """A re-run starts from an empty results directory, as the level starts from scratch."""
    for path in sorted(results_dir.rglob("*"), reverse=True):
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif path.is_dir():
            path.rmdir()


def _run_session(
    runtime: str,
    session: Session,
    spec: LevelRunSpec,
    results_dir: Path,
    on_progress: Callable[[Progress], None] | None,
    on_output: Callable[[str], None] | None,
    cancel: threading.Event | None,
    *,
    keep: Callable[[], bool] = lambda: True,
    on_session: Callable[[Session], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The lifecycle every runtime shares: watch, stop, run again after a disruption, summarise.

    The retry hook is the session's optional ``rerun()``: after the watch it returns the session of
    a new attempt (a pod after a node drain) or None. A new attempt starts from an empty results
    directory with a fresh clock. ``summary_extras()``, when the session has it, adds what only its
    runtime knows (and an ``error`` that makes the level fail). ``keep`` false (a server letting go
    of a run it adopts later) writes no summary.
    """
    started_at = time.time()
    start = time.monotonic()
    events: dict[str, Any] = {}
    try:
        while True:
            if on_session is not None:
                on_session(session)
            output = _OutputTail(results_dir / results.AGENT_STDOUT, on_output)
            events = _watch_session(session, spec, results_dir, start, on_progress, cancel, output)
            rerun = getattr(session, "rerun", None)
            following = rerun() if rerun is not None and keep() else None
            if following is None:
                break
            session.close()
            session = following
            _reset_results(results_dir)
            started_at, start = time.time(), time.monotonic()
    except KeyboardInterrupt:
        events["interrupted"] = events["keyboard"] = True
    finally:
        wait_logs = getattr(session, "wait_logs", None)
        if wait_logs is not None and keep():
            wait_logs(10.0)
        session.close()
        began = getattr(session, "budget_start", lambda: None)()
        wall = time.monotonic() - (began if began is not None else start)
        if began is not None:
            started_at = time.time() - wall
        summary = _summarize_level(spec, results_dir, runtime, events, started_at, wall)
        summary.update(extra or {})
        extras = getattr(session, "summary_extras", dict)()
        summary.update(extras)
        if extras.get("error"):
            summary["ok"] = False
        if keep():
            results.write_json(results_dir / results.SUMMARY, summary)
    return summary, events


def run_level(
    launcher: Launcher,
    spec: LevelRunSpec,
    results_dir: Path,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    keep: Callable[[], bool] = lambda: True,
    on_session: Callable[[Session], None] | None = None,
) -> LevelResult:
    """Run a planned spec with ``launcher`` into an existing results directory (the server's evaluators).

    The same lifecycle as :func:`evaluate_level`, for a caller that has already placed the level
    (a Kubernetes Job made or adopted by the executor).
    """
    refuse_unhonoured(launcher, spec)
    session = launcher.start(spec, results_dir)
    summary, _ = _run_session(
        launcher.name, session, spec, results_dir, on_progress, None, cancel, keep=keep, on_session=on_session
    )
    return LevelResult.from_summary(spec.game, spec.state or "", results_dir, summary)


def refuse_unhonoured(launcher: Launcher, spec: LevelRunSpec) -> None:
    """One sentence for every spec field ``launcher`` cannot honour but is set: refused, never ignored."""
    given = given_outside(spec, launcher.honours)
    if given:
        raise UsageError(
            f"The {launcher.name} runtime cannot honour {' and '.join(given)}: drop "
            f"{'it' if len(given) == 1 else 'them'}, or choose a runtime that can."
        )


def evaluate_levels(
    base: EvalRequest,
    levels: list[tuple[str, str]],
    *,
    parallel: int = 1,
    force: bool = False,
    on_progress: Callable[[int, Progress], None] | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[RunPlan], None] | None = None,
) -> ContestResult:
    """Evaluate several levels (a separate agent per level, as on the server) and score them.

    Levels are checked up front so a typo on line 9 does not surface after eight hours; one
    level's failure does not stop the others.
    """
    resolved = [resolve_level(game, state) for game, state in levels]
    run_seed = draw_seed(base.run.seed)  # one seed for the run; each level's is derived, as on the server
    base = replace(base, run=base.run.replace(seed=run_seed))
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
        spec = base.run.replace(game=level.game, state=level.state, seed=level_seed(run_seed, index))
        req = replace(base, run=spec, results_dir=root / slugs[index])
        cb = (lambda prog: on_progress(index, prog)) if on_progress else None
        if cancel.is_set():
            return LevelResult(level.game, level.state, req.results_dir, None, 0, 0, False, "Not started: interrupted.")
        try:
            return evaluate_level(req, force=force, on_progress=cb, cancel=cancel, level=level, on_start=on_start)
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
            _write_contest_summary(root, [f.result() for f in futures], run_seed)
            raise
        level_results = [f.result() for f in futures]
    summary = _write_contest_summary(root, level_results, run_seed)
    return ContestResult(score=summary["score"], levels=level_results, results_dir=root, summary=summary)


def _write_contest_summary(root: Path, level_results: list[LevelResult], seed: int) -> dict[str, Any]:
    summary = {
        "score": scoring.contest_score(r.score for r in level_results),
        "seed": seed,
        "levels": [
            {
                "game": r.game,
                "state": r.state,
                "score": r.score,
                "episodes": r.episodes,
                "timesteps": r.timesteps,
                "seed": r.summary.get("seed"),
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
