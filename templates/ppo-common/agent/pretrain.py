"""``python -m agent.pretrain``: train this project's PPO on a list of levels, then ship the result.

The 2018 contest's strongest recipe (the "joint PPO" of its tech report): train one policy on
the training levels, ship the checkpoint in the image, keep learning on the test level during
evaluation. This is the first half. It runs the very network and update the agent uses, on the
very environment evaluation uses (``contestkit.env.envs.ContestEnv``: sticky frame skip, 4,500-timestep
episodes, the contest reward), in-process with no bridge, ``--envs`` environments in parallel
worker processes spread across the levels. The checkpoint goes to ``pretrained/`` which the
Dockerfile copies into the image, and the agent starts from it (``init_checkpoint = "auto"``).

    python -m agent.pretrain                                   # the contest's training levels
    python -m agent.pretrain --levels my-levels.csv --envs 2 --timesteps 500000

Run it again with a larger ``--timesteps`` and it resumes from the checkpoint (weights,
optimizer and counters). Bad input is refused with one sentence before anything is written, and
an existing checkpoint is only ever replaced by a newer one of the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from agent.actions import action_set
from agent.checkpoints import unreadable
from agent.config import PRETRAINED, PROJECT_DIR, Config
from agent.framework import CHECKPOINT_SUFFIX
from agent.trainlog import TrainingLog

DEFAULT_TIMESTEPS = 1_000_000
CURVE_SUFFIX = "-reward-curve.svg"
PRETRAIN_LOG_DIR = "pretrain"  # under the output directory: out/pretrain/training.csv and out/pretrain/tb/


class PretrainError(Exception):
    """Input pretraining cannot work with; the message is one sentence for the user."""


def contest_training_list() -> Path:
    """The contest's training levels (the list the 2018 baselines were trained on)."""
    return Path(str(resources.files("contestkit") / "data" / "sonic-train.csv"))


# -- the worker side: one process per env ------------------------------------------------------
@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs; plain data, so it pickles under the spawn start method."""

    index: int
    levels: list[tuple[str, str]]  # the levels this env plays, in turn, one per episode
    seed: int
    height: int
    width: int
    grayscale: bool
    stack: int


def _worker(conn: Connection, spec: WorkerSpec) -> None:
    """Steps one contest env; sends back preprocessed frame stacks, never raw screens.

    A new episode moves on to the worker's next level. The emulator allows one game per
    process, so switching level closes the env and opens the next one (once per episode: cheap
    against 4,500 timesteps).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    from contestkit.env.envs import make_contest_env

    from agent.preprocess import FrameStack

    frames = FrameStack(spec.height, spec.width, spec.grayscale, spec.stack)
    env: Any = None
    current: tuple[str, str] | None = None
    episode = 0
    table: np.ndarray | None = None

    def start_episode() -> np.ndarray:
        nonlocal env, current, episode, table
        level = spec.levels[episode % len(spec.levels)]
        episode += 1
        if level != current:
            if env is not None:
                env.close()
            env = make_contest_env(level[0], level[1], seed=spec.seed * 1000 + spec.index)
            current = level
            new_table = action_set(env.level.game, env.buttons)
            if table is not None and not np.array_equal(new_table, table):
                raise ValueError(f"{level[0]} has another action set than the levels before it")
            table = new_table
        obs, _ = env.reset()
        return frames.reset(obs)

    try:
        stack = start_episode()
        conn.send(("ready", stack, table))
        cpu_start = time.process_time()
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                conn.send(("cpu", time.process_time() - cpu_start, None))  # stepping only, start-up excluded
                break
            assert table is not None
            obs, reward, terminated, truncated, _ = env.step(table[arg])
            final = None
            if terminated or truncated:
                final = frames.step(obs) if truncated else None
                stack = start_episode()
            else:
                stack = frames.step(obs)
            conn.send((stack, reward, terminated, truncated, final, current))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    except Exception as exc:  # report it to the parent instead of dying silently
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", None))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if env is not None:
            env.close()


class Envs:
    """N contest envs in worker processes, stepped in lockstep."""

    def __init__(self, levels: list[tuple[str, str]], n: int, seed: int, cfg: Config) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that has loaded a framework's threads
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(n):
            # Env i starts on level i and walks the list in steps of n, so the envs cover it together.
            mine = [levels[(i + k * n) % len(levels)] for k in range(len(levels))]
            spec = WorkerSpec(
                i, mine, seed, cfg.frame_height, cfg.frame_width, cfg.grayscale, cfg.frame_stack
            )
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec), daemon=True, name=f"pretrain-env-{i}")
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        replies = [self._recv(c) for c in self.conns]
        self.first = np.stack([r[1] for r in replies])
        self.tables = [r[2] for r in replies]
        self.levels = [levels[i % len(levels)] for i in range(n)]

    def _recv(self, conn: Connection) -> tuple:
        try:
            msg = conn.recv()
        except EOFError:
            raise PretrainError("an environment worker ended unexpectedly; its error is above.") from None
        if isinstance(msg[0], str) and msg[0] == "error":
            raise PretrainError(f"an environment worker failed: {msg[1]}.")
        return msg

    def step(self, actions: np.ndarray) -> list[tuple]:
        for conn, a in zip(self.conns, actions, strict=True):
            conn.send(("step", int(a)))
        return [self._recv(c) for c in self.conns]

    def close(self) -> float:
        """Stop the workers; returns the CPU seconds they spent stepping, together."""
        cpu = 0.0
        for conn in self.conns:
            try:
                conn.send(("close", None))
                deadline = time.monotonic() + 10
                while conn.poll(max(0.0, deadline - time.monotonic())):
                    reply = conn.recv()
                    # A step's reply is still in the pipe when Ctrl-C cut the loop between send and recv.
                    if isinstance(reply[0], str) and reply[0] == "cpu":
                        cpu += reply[1]
                        break
            except (BrokenPipeError, EOFError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        return cpu


# -- input checks ------------------------------------------------------------------------------
def check_levels(path: Path | None) -> tuple[Path, list[tuple[str, str]]]:
    """The level list, every level checked to exist and have its ROM, or one sentence why not."""
    from contestkit.errors import ContestkitError
    from contestkit.env.games import resolve_level, rom_path
    from contestkit.env.levellist import read_levels

    default = path is None
    path = contest_training_list() if path is None else path
    levels = read_levels(path)
    if default:
        missing = sorted({g for g, _ in levels if rom_path(g) is None})
        if missing:
            raise PretrainError(
                f"The contest's training list needs the ROMs of {', '.join(missing)}, which are not imported "
                "on this machine: import them with `contestkit roms import PATH`, or pass --levels with a "
                "CSV (header game,state) of games you have, such as Airstriker-Genesis,Level1."
            )
    checked = []
    for game, state in levels:
        try:
            level = resolve_level(game, state)
        except ContestkitError as exc:
            raise PretrainError(f"{path}: {exc}") from None
        checked.append((level.game, level.state))
    # One policy has one output per action: the levels must share an action set. (Games of other
    # consoles are checked again by the workers, which know their real buttons.)
    first = checked[0][0]
    for game, _ in checked[1:]:
        if not np.array_equal(action_set(game, None), action_set(first, None)):
            raise PretrainError(
                f"{path} mixes {first} and {game}, which have different action sets: pretrain on one game "
                "family at a time (the Sonic games share one)."
            )
    return path, checked


def check_action_sets(tables: list[np.ndarray], levels: list[tuple[str, str]]) -> np.ndarray:
    """One action set for all levels: a policy has one output per action."""
    for table, level in zip(tables[1:], levels[1:], strict=True):
        if table.shape != tables[0].shape or not np.array_equal(table, tables[0]):
            raise PretrainError(
                f"{levels[0][0]} and {level[0]} have different action sets: pretrain on one game family "
                "at a time (the Sonic games share one)."
            )
    return tables[0]


# -- the training loop -------------------------------------------------------------------------
def pretrain(
    levels_csv: Path | None,
    n_envs: int,
    timesteps: int,
    out: Path,
    cfg: Config,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, checkpointing to ``out``; returns a summary. Resumes when ``out`` exists."""
    if n_envs < 1:
        raise PretrainError(
            f"--envs must be at least 1 (got {n_envs}): it is the number of environments run in parallel."
        )
    if timesteps < 1:
        raise PretrainError(f"--timesteps must be at least 1 (got {timesteps}).")
    levels_path, levels = check_levels(levels_csv)
    # Read an existing checkpoint's metadata before starting anything: a checkpoint this run
    # cannot continue is refused with the file untouched.
    resume = out.is_file()
    if out.suffix != CHECKPOINT_SUFFIX:
        if resume:
            raise unreadable(out)  # the other framework's file: say so before loading a framework
        raise PretrainError(
            f"--out {out} must end in {CHECKPOINT_SUFFIX}, this template's checkpoint format."
        )
    from agent.ppo import PPO, read_checkpoint

    if resume:
        read_checkpoint(out)
    cfg.total_timesteps = timesteps
    if cfg.threads <= 0:  # the cores the env workers leave free (see Config.threads)
        cfg.threads = max(1, len(os.sched_getaffinity(0)) - n_envs)
    cfg.n_steps = max(1, cfg.n_steps // n_envs)  # the same update batch as evaluation's single env
    envs = Envs(levels, n_envs, cfg.seed, cfg)
    try:
        table = check_action_sets(envs.tables, envs.levels)
        obs_shape = envs.first.shape[1:]
        ppo = PPO(cfg, obs_shape, len(table), n_envs=n_envs)
        history: list[float] = []
        ends: list[int] = []  # the timestep each episode of history ended at: the curve's x axis
        if resume:
            meta = ppo.load(out)
            history = list(meta.get("pretrain", {}).get("episode_rewards", []))
            ends = list(meta.get("pretrain", {}).get("episode_timesteps", []))
            if ppo.timesteps >= timesteps:
                raise PretrainError(
                    f"{out} already holds {ppo.timesteps:,} timesteps of training, "
                    f"not fewer than --timesteps {timesteps:,}: pass a larger --timesteps to continue it."
                )
        summary = _train(ppo, envs, levels_path, levels, timesteps, out, history, ends, resume, progress)
    finally:
        worker_cpu = envs.close()
    # CPU seconds per timestep of the learner (this process) and of the env workers together: what
    # the run would cost on an idle machine, which a shared one's wall clock does not show.
    steps = max(summary["timesteps_this_run"], 1)
    summary["cpu_ms_per_timestep"] = {
        "learner": 1000 * summary.pop("_learner_cpu_s") / steps,
        "env_workers": 1000 * worker_cpu / steps,
    }
    cpu = summary["cpu_ms_per_timestep"]
    print(
        f"cpu per timestep: learner {cpu['learner']:.2f} ms, env workers {cpu['env_workers']:.2f} ms",
        flush=True,
    )
    return summary


def _train(
    ppo: Any,
    envs: Envs,
    levels_path: Path,
    levels: list[tuple[str, str]],
    timesteps: int,
    out: Path,
    history: list[float],
    ends: list[int],
    resumed: bool,
    show_progress: bool,
) -> dict[str, Any]:
    cfg = ppo.cfg
    n = len(envs.conns)
    ro = ppo.rollout
    curve = out.with_name(out.stem + CURVE_SUFFIX)
    recent: deque[float] = deque(history[-20:], maxlen=20)
    ep_reward = np.zeros(n)
    stacks = envs.first
    started_at = ppo.timesteps
    start = time.monotonic()
    cpu_start = time.process_time()
    next_ckpt = ppo.timesteps + cfg.checkpoint_every
    next_log = ppo.timesteps + cfg.log_every
    ended_by = "done"
    header = (
        f"pretraining {'(resumed at ' + format(ppo.timesteps, ',') + ') ' if resumed else ''}"
        f"on {len(levels)} level(s) from {levels_path}, {n} env(s), device {ppo.device}, "
        f"{ppo.n_actions} actions -> {out}"
    )
    print(header, flush=True)
    print(f"initial weights sha256={ppo.weights_digest()}", flush=True)

    def extra() -> dict[str, Any]:
        return {
            "pretrain": {
                "levels_csv": str(levels_path),
                "levels": [list(lv) for lv in levels],
                "envs": n,
                "episode_rewards": [round(float(r), 3) for r in history],
                "episode_timesteps": ends,
            }
        }

    def save() -> None:
        ppo.save(out, extra())
        _write_curve(history, ends, curve, out)

    # The same statistics as an evaluation's, in out/pretrain/ (out/ stays out of the image).
    training = TrainingLog(cfg.resolved_out_dir() / PRETRAIN_LOG_DIR, start_timesteps=ppo.timesteps)
    if training.note:
        print(training.note, flush=True)
    bar = _Progress(timesteps, started_at, show_progress)
    try:
        while ppo.timesteps < timesteps:
            actions, log_probs, values = ppo.act_batch(stacks)
            t = ro.size
            ro.add(stacks, actions, log_probs, values)
            replies = envs.step(actions)
            ppo.timesteps += n
            stacks = np.stack([r[0] for r in replies])
            rewards = np.array([r[1] for r in replies], dtype=np.float32)
            ro.rewards[t] = rewards * cfg.reward_scale
            ep_reward += rewards
            finals = []
            for i, (_, _, terminated, truncated, final, _) in enumerate(replies):
                if terminated or truncated:
                    ro.boundary[t, i] = 1.0
                    ro.terminal[t, i] = float(terminated)
                    if truncated:
                        finals.append((i, final))
                    history.append(float(ep_reward[i]))
                    ends.append(ppo.timesteps)
                    training.episode(float(ep_reward[i]), ppo.timesteps)
                    recent.append(float(ep_reward[i]))
                    ep_reward[i] = 0.0
            if finals:
                ro.bootstrap[t, [i for i, _ in finals]] = ppo.values(np.stack([f for _, f in finals]))
            if ro.size == cfg.n_steps:
                stats = ppo.update(ppo.values(stacks))
                training.update(stats, timesteps=ppo.timesteps, updates=ppo.updates, episodes=len(history),
                                mean_reward=float(np.mean(recent)) if recent else None)  # fmt: skip
            mean = float(np.mean(recent)) if recent else float("nan")
            rate = (ppo.timesteps - started_at) / max(time.monotonic() - start, 1e-9)
            bar.update(ppo.timesteps, rate, mean, len(history))
            if ppo.timesteps >= next_log:
                next_log += cfg.log_every
                bar.log(f"t={ppo.timesteps} episodes={len(history)} mean20={mean:.1f} {rate:.0f} steps/s")
            if ppo.timesteps >= next_ckpt:
                next_ckpt += cfg.checkpoint_every
                save()
    except KeyboardInterrupt:
        ended_by = "interrupt"
    finally:
        bar.close()
        training.close()
        if ppo.timesteps > started_at:
            save()
    seconds = time.monotonic() - start
    summary = {
        "_learner_cpu_s": time.process_time() - cpu_start,
        "checkpoint": str(out),
        "curve": str(curve),
        "training_log": str(training.csv_path),
        "timesteps": ppo.timesteps,
        "timesteps_this_run": ppo.timesteps - started_at,
        "seconds": seconds,
        "steps_per_s": (ppo.timesteps - started_at) / max(seconds, 1e-9),
        "episodes": len(history),
        "mean_reward_last20": float(np.mean(recent)) if recent else None,
        "ended_by": ended_by,
        "weights_sha256": ppo.weights_digest(),
    }
    print(
        f"saved {out} after {ppo.timesteps:,} timesteps ({summary['steps_per_s']:.0f} steps/s this run); "
        f"reward curve {curve}",
        flush=True,
    )
    return summary


def _write_curve(history: list[float], ends: list[int], curve: Path, out: Path) -> None:
    from contestkit.runs.curves import write_reward_svg

    # Against timesteps; a checkpoint from before episode_timesteps were kept is drawn by episode.
    write_reward_svg(history, curve, title=f"pretraining {out.name}", timesteps=ends)


class _Progress:
    """A rich progress bar on a terminal; plain log lines (every ``log_every``) otherwise."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self._progress = None
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]pretraining"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} timesteps"),
                TextColumn("{task.fields[rate]:.0f} steps/s"),
                TextColumn("mean20 {task.fields[mean]:.1f}"),
                TextColumn("{task.fields[episodes]} episodes"),
                TimeRemainingColumn(),
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=total, completed=done, rate=0.0, mean=float("nan"), episodes=0
            )

    def update(self, done: int, rate: float, mean: float, episodes: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, rate=rate, mean=mean, episodes=episodes)

    def log(self, line: str) -> None:
        if self._progress is None:
            print(line, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levels", type=Path, default=None,
        help="CSV with the header game,state (default: the contest's training list; needs the Sonic ROMs)",
    )  # fmt: skip
    parser.add_argument(
        "--envs", type=int, default=2, help="environments run in parallel worker processes (default 2)"
    )
    parser.add_argument(
        "--timesteps", type=int, default=DEFAULT_TIMESTEPS,
        help=f"total over all envs, a resumed checkpoint's included (default {DEFAULT_TIMESTEPS:,})",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help=f"checkpoint to write and resume (default {PRETRAINED})"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the network, sampling and envs (default: AGENT_SEED or 0)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="plain log lines instead of the progress bar"
    )
    args = parser.parse_args(argv)
    cfg = Config.from_env()
    if args.seed is not None:
        cfg.seed = args.seed
    out = args.out or PROJECT_DIR / PRETRAINED
    from contestkit.errors import ContestkitError

    from agent.checkpoints import CheckpointError

    try:
        summary = pretrain(args.levels, args.envs, args.timesteps, out, cfg, progress=not args.no_progress)
    except (PretrainError, CheckpointError, ContestkitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 130 if summary["ended_by"] == "interrupt" else 0


if __name__ == "__main__":
    sys.exit(main())
