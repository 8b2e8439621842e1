"""The agent's own tests: fast unit checks, then one short evaluation on the local runtime.

Run them after every change (`pytest`); `pytest -m "not eval"` skips the evaluation.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.actions import GENESIS_BUTTONS, action_set, combos_for
from agent.config import Config
from agent.framework import CHECKPOINT_SUFFIX
from agent.main import run
from agent.preprocess import FrameStack

PROJECT = Path(__file__).resolve().parent.parent
CHECKPOINT = f"latest{CHECKPOINT_SUFFIX}"


class FakeEnv:
    """A stand-in for the remote env: random screens, and the budget error after ``limit`` steps."""

    def __init__(self, limit: int, episode_length: int = 50, game: str = "Airstriker-Genesis") -> None:
        from contestkit.bridge.errors import TimestepTimeoutError

        self._error = TimestepTimeoutError
        self.game = game
        self.buttons = list(GENESIS_BUTTONS)
        self.limit = limit
        self.episode_length = episode_length
        self.steps = 0
        self.t = 0
        self.rng = np.random.default_rng(0)
        self.actions: list[np.ndarray] = []

    def _obs(self) -> np.ndarray:
        return self.rng.integers(0, 255, (224, 320, 3), dtype=np.uint8)

    def reset(self) -> tuple[np.ndarray, dict]:
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.steps >= self.limit:
            raise self._error("timestep budget used up")
        self.steps += 1
        self.t += 1
        self.actions.append(np.array(action))
        reward = 20.0 if action[0] else 0.0  # "B fires"
        truncated = self.t >= self.episode_length
        return self._obs(), reward, False, truncated, {}


def small_config(tmp_path: Path, **overrides: object) -> Config:
    cfg = Config(n_steps=64, n_minibatches=2, n_epochs=2, out_dir=str(tmp_path / "out"), log_every=10**9)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_sonic_gets_the_baselines_seven_combos() -> None:
    combos = combos_for("SonicTheHedgehog2-Genesis", GENESIS_BUTTONS)
    assert combos == [
        ["LEFT"],
        ["RIGHT"],
        ["LEFT", "DOWN"],
        ["RIGHT", "DOWN"],
        ["DOWN"],
        ["DOWN", "B"],
        ["B"],
    ]
    table = action_set("SonicAndKnuckles3-Genesis", GENESIS_BUTTONS)
    assert table.shape == (7, 12) and table.dtype == np.uint8


def test_other_games_get_a_generic_set_without_system_buttons() -> None:
    table = action_set("Airstriker-Genesis", GENESIS_BUTTONS)
    assert table.shape[1] == 12 and len(table) >= 8
    start, mode = GENESIS_BUTTONS.index("START"), GENESIS_BUTTONS.index("MODE")
    assert not table[:, start].any() and not table[:, mode].any()
    assert len({row.tobytes() for row in table}) == len(table)  # no duplicates
    assert not table[0].any()  # "do nothing" is an option


def test_frame_stack_shapes_and_order() -> None:
    frames = FrameStack(84, 84, grayscale=True, stack=4)
    black = np.zeros((224, 320, 3), np.uint8)
    white = np.full((224, 320, 3), 255, np.uint8)
    first = frames.reset(black)
    assert first.shape == (4, 84, 84) and first.dtype == np.uint8 and first.max() == 0
    nxt = frames.step(white)
    assert nxt[-1].min() >= 250 and nxt[0].max() == 0  # newest frame last
    colour = FrameStack(60, 80, grayscale=False, stack=2)
    assert colour.reset(white).shape == (6, 60, 80)


def test_config_reads_overrides_from_the_environment() -> None:
    cfg = Config.from_env(
        {"AGENT_N_STEPS": "128", "AGENT_GRAYSCALE": "false", "AGENT_INIT_CHECKPOINT": f"x{CHECKPOINT_SUFFIX}"}
    )
    assert cfg.n_steps == 128 and cfg.grayscale is False and cfg.init_checkpoint == f"x{CHECKPOINT_SUFFIX}"
    with pytest.raises(ValueError, match="AGENT_N_STEPS"):
        Config.from_env({"AGENT_N_STEPS": "lots"})


def test_run_learns_then_saves_and_returns_when_the_budget_ends(tmp_path: Path) -> None:
    env = FakeEnv(limit=200)
    summary = run(env, small_config(tmp_path))
    assert summary["ended_by"] == "budget"
    assert summary["timesteps"] == 200 and summary["episodes"] == 4
    assert (tmp_path / "out" / "checkpoints" / CHECKPOINT).is_file()


def test_fine_tuning_starts_from_a_shipped_checkpoint(tmp_path: Path) -> None:
    run(FakeEnv(limit=100), small_config(tmp_path))
    shipped = tmp_path / "pretrained" / CHECKPOINT
    shipped.parent.mkdir()
    (tmp_path / "out" / "checkpoints" / CHECKPOINT).rename(shipped)
    cfg = small_config(tmp_path, init_checkpoint=str(shipped))
    summary = run(FakeEnv(limit=100), cfg)
    assert summary["timesteps"] == 100
    # A checkpoint for another action set is refused with a clear message.
    with pytest.raises(ValueError, match="actions"):
        run(FakeEnv(limit=10, game="SonicTheHedgehog-Genesis"), cfg)


@pytest.mark.eval
def test_a_short_local_eval_plays_episodes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    # One math thread: on a shared CPU a second one spins on the env's core while it waits (measured:
    # acting 8x slower on a loaded 2-core machine), and this test is about playing, not speed.
    env = dict(os.environ, AGENT_N_STEPS="256", AGENT_LOG_EVERY="500", AGENT_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "contestkit", "eval", "Airstriker-Genesis", "Level1", "--runtime", "local",
         "--timestep-limit", "1500", "--results-dir", str(results)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    monitors = list(results.rglob("monitor.csv"))
    assert monitors, f"no monitor.csv under {results}"
    with monitors[0].open() as fh:
        episodes = list(csv.DictReader(fh))
    assert episodes and all(float(e["l"]) > 0 for e in episodes)
    summary = json.loads(next(results.rglob("summary.json")).read_text())
    assert summary.get("episodes", len(episodes)) >= 1
    stdout = "".join(p.read_text() for p in results.rglob("agent-stdout.txt"))
    assert "saved" in stdout, stdout[-2000:]
    # The checkpoint lands in the runtime's output directory ($CONTESTKIT_OUT_DIR).
    assert list(results.rglob(CHECKPOINT)), f"no {CHECKPOINT} under {results}"


def test_annealing_scales_learning_rate_and_clip_down_to_zero(tmp_path: Path) -> None:
    from agent.ppo import PPO

    cfg = small_config(tmp_path, anneal=True, total_timesteps=256)
    assert [cfg.schedule(t) for t in (0, 128, 256, 512)] == [1.0, 0.5, 0.0, 0.0]
    assert small_config(tmp_path).schedule(10**9) == 1.0  # off by default: constant, as the contest baseline
    ppo = PPO(cfg, (4, 84, 84), 12)
    rng = np.random.default_rng(0)
    for _ in range(2):  # two rollouts of 64: the second starts at timestep 64 of 256
        for t in range(64):
            ppo.rollout.add(rng.integers(0, 255, (4, 84, 84), dtype=np.uint8), 0, -2.5, 0.0)
            ppo.rollout.rewards[t] = 1.0
            ppo.timesteps += 1
        stats = ppo.update(0.0)
    assert stats["lr_frac"] == pytest.approx(0.75)


def _tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``logdir``, as TensorBoard itself reads them
    (``tf.summary`` writes scalars as tensors, ``torch.utils.tensorboard`` as scalars)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    found = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags().get("tensors", []):
        found[tag] = [(e.step, float(np.asarray(_tensor_value(e.tensor_proto)))) for e in acc.Tensors(tag)]
    return found


def _tensor_value(proto: object) -> object:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(proto)


def test_every_update_logs_the_learners_statistics_to_tensorboard_and_csv(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="the event files need `pip install tensorboard`")
    run(FakeEnv(limit=200), small_config(tmp_path))  # 3 updates of 64 timesteps, 4 episodes
    out = tmp_path / "out"
    with open(out / "training.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["timesteps"]) for r in rows] == [64, 128, 192]
    names = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance",
             "learning_rate", "steps_per_second")  # fmt: skip
    for row in rows:
        for name in names:
            assert np.isfinite(float(row[name])), (name, row)
    assert float(rows[0]["entropy"]) > 0 and float(rows[0]["steps_per_second"]) > 0
    assert float(rows[0]["learning_rate"]) == pytest.approx(Config().learning_rate)
    scalars = _tensorboard_scalars(out / "tb")
    for name in names:
        assert [step for step, _ in scalars[f"train/{name}"]] == [64, 128, 192], name
    assert scalars["train/approx_kl"][0][1] == pytest.approx(float(rows[0]["approx_kl"]), rel=1e-5)
    assert len(scalars["episode/reward"]) == 4  # each episode, at the timestep it ended


def test_loading_the_learner_prints_nothing_on_stderr(tmp_path: Path) -> None:
    # agent-stderr.txt is where a real error shows up: no framework start-up lines (TensorFlow's
    # oneDNN and absl notices, which tensorboard also triggers where TensorFlow is installed) may bury it.
    code = ("import sys, agent.ppo, agent.model; from agent.trainlog import TrainingLog; "
            "TrainingLog(sys.argv[1]).close()")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], cwd=PROJECT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
