"""Episode monitor: the contest's ``monitor.csv`` and ``log.csv``.

The contest scored agents from these files, so they are written the moment each row exists and
flushed: an agent or env process that dies loses nothing that had finished.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

LOG_EVERY = 1000


class EpisodeLog:
    """Appends finished episodes (r, l, t) and a heartbeat every 1,000 timesteps (l, t)."""

    def __init__(self, results_dir: Path, *, log_every: int = LOG_EVERY, start: float | None = None) -> None:
        results_dir.mkdir(parents=True, exist_ok=True)
        self.start = time.time() if start is None else start
        self.log_every = log_every
        self.total_steps = 0
        self.episode_reward = 0.0
        self.episode_steps = 0
        self.episode_rewards: list[float] = []
        self.episode_lengths: list[int] = []
        self._monitor_file = open(results_dir / "monitor.csv", "w", newline="")  # noqa: SIM115
        self._log_file = open(results_dir / "log.csv", "w", newline="")  # noqa: SIM115
        self._monitor = csv.writer(self._monitor_file)
        self._log = csv.writer(self._log_file)
        self._monitor.writerow(["r", "l", "t"])
        self._log.writerow(["l", "t"])
        self._monitor_file.flush()
        self._log_file.flush()

    def record(self, reward: float, done: bool) -> None:
        """Account one timestep; called by the env process for every step it serves."""
        self.total_steps += 1
        self.episode_steps += 1
        self.episode_reward += reward
        if self.total_steps % self.log_every == 0:
            self._log.writerow([self.total_steps, round(time.time() - self.start, 6)])
            self._log_file.flush()
        if done:
            self.end_episode()

    def end_episode(self) -> None:
        self.episode_rewards.append(self.episode_reward)
        self.episode_lengths.append(self.episode_steps)
        self._monitor.writerow([round(self.episode_reward, 6), self.episode_steps, round(time.time() - self.start, 6)])
        self._monitor_file.flush()
        self.episode_reward = 0.0
        self.episode_steps = 0

    def discard_partial(self) -> None:
        """Forget an unfinished episode (a reset before done); the contest never scored those."""
        self.episode_reward = 0.0
        self.episode_steps = 0

    def close(self) -> None:
        for f in (self._monitor_file, self._log_file):
            if not f.closed:
                f.close()


class Monitor(gym.Wrapper):
    """Wraps an env in-process with the same episode log the env process writes."""

    def __init__(self, env: gym.Env, results_dir: Path) -> None:
        super().__init__(env)
        self.log = EpisodeLog(Path(results_dir))

    def reset(self, **kwargs: Any):
        if self.log.episode_steps:
            self.log.discard_partial()
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.record(reward, terminated or truncated)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self.log.close()
        super().close()
