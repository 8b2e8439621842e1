"""Entry point: connect to the remote env, learn until the budget ends, save, exit 0.

Evaluation ends when the env side refuses the next step (timestep or wall-clock budget, or the
env went away); that arrives as a ``GymRemoteError``. It is the normal end of a run, not a
failure, so the agent saves its checkpoint and returns normally: a non-zero exit would make the
results look like a crash.
"""

from __future__ import annotations

import signal
import sys
import time
from collections import deque
from typing import Any, Protocol

import numpy as np

from agent.actions import action_set
from agent.checkpoints import CheckpointError
from agent.config import AUTO, Config
from agent.framework import CHECKPOINT_SUFFIX
from agent.preprocess import FrameStack
from agent.trainlog import TrainingLog

BRIDGE = "tmp/sock"  # relative to the working directory, as in the 2018 contest


class GymnasiumEnv(Protocol):
    """What the agent needs from an env: contestkit's bridge client or an in-process env."""

    def reset(self) -> tuple[np.ndarray, dict]: ...

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]: ...


def budget_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the run is over" (all ``GymRemoteError`` subclasses)."""
    from contestkit.bridge.errors import GymRemoteError

    return (GymRemoteError,)


def connect(path: str = BRIDGE) -> Any:
    """contestkit's gymnasium-API client; ``copy_obs=False`` because frames are pooled at once."""
    from contestkit.bridge.client import RemoteEnv

    return RemoteEnv(path, copy_obs=False)


def log(message: str) -> None:
    print(message, flush=True)


def run(env: GymnasiumEnv, cfg: Config) -> dict[str, Any]:
    """Train online against ``env`` until it raises a budget error; returns a short summary."""
    from agent.ppo import PPO

    game = getattr(env, "game", None)
    actions = action_set(game, getattr(env, "buttons", None))
    frames = FrameStack(cfg.frame_height, cfg.frame_width, cfg.grayscale, cfg.frame_stack)
    ppo = PPO(cfg, frames.shape, len(actions))
    init = cfg.resolved_init_checkpoint()
    if init is not None:
        try:
            ppo.load(init, weights_only=True)
            log(f"fine-tuning from {init}")
        except CheckpointError as exc:
            if cfg.init_checkpoint != AUTO:
                raise  # asked for by name: a wrong checkpoint is an error, not a silent restart
            # The shipped checkpoint is for another game family: learn this one from scratch.
            log(f"not starting from the shipped checkpoint: {exc}")
    # The weights the first step is taken with, to compare with the checkpoint's (tests do).
    log(f"initial weights sha256={ppo.weights_digest()}")
    out_dir = cfg.resolved_out_dir()
    checkpoint = out_dir / "checkpoints" / f"latest{CHECKPOINT_SUFFIX}"
    log(f"PPO on {game or 'unknown game'}: {len(actions)} actions, obs {frames.shape}, device {ppo.device}")
    training = TrainingLog(out_dir)  # every update's statistics: out/tb/ (TensorBoard) and out/training.csv
    if training.note:
        log(training.note)

    episode_rewards: deque[float] = deque(maxlen=20)
    episodes = 0
    ep_reward = 0.0
    start = time.monotonic()
    next_log = cfg.log_every
    next_ckpt = cfg.checkpoint_every
    ro = ppo.rollout
    ended_by = "budget"
    try:
        obs, _ = env.reset()
        stack = frames.reset(obs)
        while True:
            a, log_prob, value = ppo.act(stack)
            t = ro.size
            ro.add(stack, a, log_prob, value)
            obs, reward, terminated, truncated, _ = env.step(actions[a])
            ppo.timesteps += 1
            ro.rewards[t] = reward * cfg.reward_scale
            ep_reward += reward
            if terminated or truncated:
                ro.boundary[t] = 1.0
                ro.terminal[t] = float(terminated)
                if truncated:
                    ro.bootstrap[t] = ppo.value(frames.step(obs))
                episodes += 1
                episode_rewards.append(ep_reward)
                training.episode(ep_reward, ppo.timesteps)
                ep_reward = 0.0
                obs, _ = env.reset()
                stack = frames.reset(obs)
            else:
                stack = frames.step(obs)
            if ro.size == cfg.n_steps:
                stats = ppo.update(ppo.value(stack))
                mean20 = float(np.mean(episode_rewards)) if episode_rewards else None
                training.update(stats, timesteps=ppo.timesteps, updates=ppo.updates, episodes=episodes,
                                mean_reward=mean20)  # fmt: skip
            if ppo.timesteps >= next_log:
                next_log += cfg.log_every
                mean = float(np.mean(episode_rewards)) if episode_rewards else float("nan")
                rate = ppo.timesteps / max(time.monotonic() - start, 1e-9)
                stats = " ".join(f"{k}={v:.3f}" for k, v in ppo.last_stats.items())
                log(f"t={ppo.timesteps} episodes={episodes} mean20={mean:.1f} {rate:.0f} steps/s {stats}")
            if ppo.timesteps >= next_ckpt:
                next_ckpt += cfg.checkpoint_every
                ppo.save(checkpoint)
    except budget_errors() as exc:
        log(f"budget ended the run ({type(exc).__name__}: {exc})")
    except KeyboardInterrupt:
        ended_by = "interrupt"
    finally:
        training.close()
        if ppo.timesteps:
            ppo.save(checkpoint)
            log(f"saved {checkpoint} after {ppo.timesteps} timesteps")
    return {
        "timesteps": ppo.timesteps,
        "episodes": episodes,
        "mean_reward_last20": float(np.mean(episode_rewards)) if episode_rewards else None,
        "checkpoint": str(checkpoint) if ppo.timesteps else None,
        "ended_by": ended_by,
    }


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Run against the contest env at ``tmp/sock``; exit 0 when the budget ends the run."""
    # `docker stop` and the runtimes' shutdown send SIGTERM: treat it like Ctrl-C, so the
    # checkpoint is still saved before the process ends.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    cfg = Config.from_env()
    env = connect()
    try:
        summary = run(env, cfg)
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # the env may already be gone; nothing left to tell it
                pass
    if summary["ended_by"] == "interrupt":
        sys.exit(130)


if __name__ == "__main__":
    main()
