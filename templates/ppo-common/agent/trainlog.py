"""The learner's statistics, every update: to TensorBoard (``out/tb/``) and to a CSV (``out/training.csv``).

Why: an RL run you cannot see into is tuned by guesswork. These are the numbers RL users read
first (Stable-Baselines3, RL Zoo and CleanRL log the same ones): policy and value loss, entropy,
approximate KL, clip fraction, explained variance, learning rate and steps/s, each against
timesteps, plus every episode's reward. ``tensorboard --logdir results/`` shows every evaluation
(the output directory of each is ``results/<run>/out``); ``tensorboard --logdir pretrained/`` the
pretraining. The CSV holds the same rows for a notebook or a spreadsheet.

TensorBoard files are written with the framework's own writer (``torch.utils.tensorboard`` or
``tf.summary``), which needs the ``tensorboard`` package; without it the CSV is still written
and :attr:`TrainingLog.note` says why there are no event files.
"""

from __future__ import annotations

import csv
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from agent.framework import FRAMEWORK

TB_DIR = "tb"
CSV_NAME = "training.csv"
#: The CSV's columns, in order; TensorBoard tags are ``train/<name>`` (``timesteps`` is the step).
COLUMNS = (
    "timesteps", "updates", "episodes", "wall_seconds", "steps_per_second", "policy_loss", "value_loss",
    "entropy", "approx_kl", "clip_fraction", "explained_variance", "learning_rate", "mean_reward_last20",
)  # fmt: skip

Scalar = Callable[[str, float, int], None]


def _tensorboard(logdir: Path) -> tuple[Scalar, Callable[[], None], Callable[[], None]]:
    """The framework's event-file writer as (scalar, flush, close); ImportError without tensorboard."""
    if FRAMEWORK == "pytorch":
        # tensorboard imports all of TensorFlow when it finds it (seconds, and its start-up lines on
        # stderr) unless its documented "no TensorFlow" marker module exists: the stub writes the
        # same event files.
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(logdir))
        return (lambda tag, value, step: writer.add_scalar(tag, value, step)), writer.flush, writer.close
    import tensorboard  # noqa: F401  tf.summary writes nothing without it, silently
    import tensorflow as tf

    tf_writer = tf.summary.create_file_writer(str(logdir))

    def scalar(tag: str, value: float, step: int) -> None:
        with tf_writer.as_default():
            tf.summary.scalar(tag, value, step=step)

    return scalar, tf_writer.flush, tf_writer.close


class TrainingLog:
    """One row per PPO update (and a point per episode) against timesteps."""

    def __init__(self, out_dir: Path, *, start_timesteps: int = 0, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.out_dir / CSV_NAME
        self.tb_dir = self.out_dir / TB_DIR
        fresh = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._file = open(self.csv_path, "a", newline="")  # a resumed pretraining appends
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMNS, extrasaction="ignore")
        if fresh:
            self._csv.writeheader()
        self.note: str | None = None
        self._scalar: Scalar | None = None
        self._flush: Callable[[], None] = lambda: None
        self._close: Callable[[], None] = lambda: None
        if tensorboard:
            try:
                self._scalar, self._flush, self._close = _tensorboard(self.tb_dir)
            except ImportError:
                self.note = (
                    f"tensorboard is not installed: statistics go to {self.csv_path} only "
                    "(`pip install tensorboard` for event files in out/tb/)"
                )
        self._start = time.monotonic()
        self._last_time = self._start
        self._last_steps = start_timesteps  # a resumed run's rate counts only its own steps

    def episode(self, reward: float, timesteps: int) -> None:
        """An episode's reward, at the timestep it ended."""
        if self._scalar is not None:
            self._scalar("episode/reward", float(reward), timesteps)

    def update(self, stats: dict[str, float], *, timesteps: int, updates: int, episodes: int,
               mean_reward: float | None) -> dict[str, float]:  # fmt: skip
        """Record one update's statistics; returns the row (steps/s since the previous update)."""
        now = time.monotonic()
        rate = (timesteps - self._last_steps) / max(now - self._last_time, 1e-9)
        self._last_steps, self._last_time = timesteps, now
        row: dict[str, float] = {
            "timesteps": timesteps,
            "updates": updates,
            "episodes": episodes,
            "wall_seconds": round(now - self._start, 3),
            "steps_per_second": rate,
            **{k: float(stats[k]) for k in COLUMNS if k in stats},
        }
        if mean_reward is not None:
            row["mean_reward_last20"] = mean_reward
        self._csv.writerow(row)
        self._file.flush()
        if self._scalar is not None:
            for name in COLUMNS[3:]:
                if name in row:
                    self._scalar(f"train/{name}", float(row[name]), timesteps)
            self._flush()
        return row

    def close(self) -> None:
        self._file.close()
        self._close()
