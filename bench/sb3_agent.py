"""Stable-Baselines3's PPO with RL Zoo's tuned Atari settings, as a contest agent: the PPO an RL
entrant of 2026 would reach for first, measured by ``bench/agents.py --agents sb3-ppo`` on the same
env, level and budget as the templates' hand-written PPO, through ``contestkit eval`` like them.

The settings are RL Zoo's ``atari`` entry of ``hyperparams/ppo.yml`` (rl-baselines3-zoo, DLR-RM):
SB3's Atari preprocessing (84x84 grayscale frames, ``WarpFrame``; rewards clipped to their sign,
``ClipRewardEnv``), 4 frames stacked (``VecFrameStack``), ``CnnPolicy`` (the Nature CNN),
n_steps 128 x 8 envs, 4 epochs, batch 256, learning rate 2.5e-4 and clip range 0.1 both annealed
linearly to 0, vf_coef 0.5, ent_coef 0.01 (SB3's defaults for the rest: gamma 0.99, GAE lambda
0.95, max_grad_norm 0.5, advantage normalisation).

Adapted, only where the contest forces it (each named so a reader can undo it):
- One env per level-run: the contest gives an agent one env, so RL Zoo's 8 envs become 1 and
  ``n_steps`` becomes 8 x 128 = 1,024, keeping the 1,024 samples an update learns from.
- Frame skip and sticky actions: the contest env already repeats each action 4 frames with
  p=0.25 stickiness, so SB3's ``MaxAndSkipEnv``/``StickyActionEnv`` are left out (as is the noop
  reset, the env's own start being fixed, and ``EpisodicLifeEnv``/``FireResetEnv``, which need
  ALE's lives and action meanings).
- The 12-button action set: the policy chooses among the same button combinations as the
  templates' PPO (``templates/ppo-common/agent/actions.py``, loaded from there, not copied), as the
  2018 contest baselines did with their SonicDiscretizer; 4,096 raw combinations include START and
  MODE.
- The budget: the schedules anneal over ``AGENT_TOTAL_TIMESTEPS`` (the benchmark's budget), and the
  run ends when the env reports the budget spent (a ``GymRemoteError``), the contest's normal end.

Environment: ``AGENT_SEED`` (SB3's seed), ``AGENT_TOTAL_TIMESTEPS``, ``AGENT_THREADS`` (torch's),
``SB3_TENSORBOARD`` (a directory for SB3's own TensorBoard log, off by default).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from contestkit.bridge.client import RemoteEnv
from contestkit.bridge.errors import GymRemoteError

ACTIONS_MODULE = Path(__file__).resolve().parent.parent / "templates" / "ppo-common" / "agent" / "actions.py"

OBS_SHAPE = (224, 320, 3)  # the contest's frames (Genesis), for envs that do not say

# RL Zoo, hyperparams/ppo.yml, "atari" (the values before adaptation; see the docstring).
ZOO_ATARI = {"n_envs": 8, "n_steps": 128, "n_epochs": 4, "batch_size": 256, "learning_rate": 2.5e-4,
             "clip_range": 0.1, "vf_coef": 0.5, "ent_coef": 0.01, "frame_stack": 4, "screen_size": 84}  # fmt: skip


def _template_actions() -> Any:
    """The templates' action-set module, loaded from its file (one home for the button rule)."""
    spec = importlib.util.spec_from_file_location("contest_actions", ACTIONS_MODULE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the action set from {ACTIONS_MODULE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ContestEnv(gym.Env):
    """The contest's remote env as a ``gymnasium.Env`` (SB3's wrappers require one), with the
    templates' discrete action set in place of the 12 raw buttons."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, remote: RemoteEnv) -> None:
        self.remote = remote
        actions = _template_actions()
        buttons = list(getattr(remote, "buttons", None) or actions.GENESIS_BUTTONS)
        self.combos = actions.action_set(getattr(remote, "game", None), buttons)
        shape = getattr(getattr(remote, "observation_space", None), "shape", None) or OBS_SHAPE
        self.observation_space = gym.spaces.Box(0, 255, tuple(shape), np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.combos))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.remote.reset()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.remote.step(self.combos[int(action)])


def linear(start: float) -> Any:
    """RL Zoo's ``lin_<value>``: from ``start`` down to 0 as SB3's progress_remaining goes 1 -> 0."""
    return lambda progress_remaining: progress_remaining * start


def build(env: gym.Env, seed: int, total: int, tensorboard: str | None = None) -> tuple[Any, Any]:
    """The wrapped, vectorised env and the PPO model (RL Zoo's Atari settings, adapted as above)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.atari_wrappers import ClipRewardEnv, WarpFrame
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

    size = ZOO_ATARI["screen_size"]
    venv = DummyVecEnv([lambda: ClipRewardEnv(WarpFrame(env, width=size, height=size))])
    venv = VecTransposeImage(VecFrameStack(venv, n_stack=ZOO_ATARI["frame_stack"]))
    n_steps = ZOO_ATARI["n_envs"] * ZOO_ATARI["n_steps"]  # one env: the same samples per update
    model = PPO(
        "CnnPolicy",
        venv,
        n_steps=min(n_steps, max(total, 2)),  # a smoke run's budget can be below one rollout
        batch_size=min(ZOO_ATARI["batch_size"], max(total, 2)),
        n_epochs=ZOO_ATARI["n_epochs"],
        learning_rate=linear(ZOO_ATARI["learning_rate"]),
        clip_range=linear(ZOO_ATARI["clip_range"]),
        vf_coef=ZOO_ATARI["vf_coef"],
        ent_coef=ZOO_ATARI["ent_coef"],
        seed=seed,
        device="cpu",
        tensorboard_log=tensorboard,
        verbose=0,
    )
    return venv, model


def main() -> None:
    """Learn online against the contest env at ``tmp/sock`` until the budget ends the run (exit 0)."""
    import torch

    torch.set_num_threads(int(os.environ.get("AGENT_THREADS", "1")))
    seed = int(os.environ.get("AGENT_SEED", "0"))
    total = int(os.environ.get("AGENT_TOTAL_TIMESTEPS", "1000000"))  # the contest's budget
    remote = RemoteEnv("tmp/sock")
    venv, model = build(ContestEnv(remote), seed, total, os.environ.get("SB3_TENSORBOARD") or None)
    print(f"SB3 PPO (RL Zoo Atari settings) seed {seed}, {total} timesteps, "
          f"{venv.action_space.n} actions", flush=True)  # fmt: skip
    try:
        model.learn(total_timesteps=total + 1)  # +1: the env, not SB3, ends the run at the budget
    except GymRemoteError as exc:
        print(f"run over: {type(exc).__name__}: {exc}", flush=True)
    finally:
        try:
            remote.close()
        except (GymRemoteError, OSError):
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
