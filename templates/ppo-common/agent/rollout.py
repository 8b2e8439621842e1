"""Rollout storage and generalized advantage estimation, shared by both PPO templates.

Pure numpy: the framework-specific part of PPO (the network and its update) is in ``ppo.py``.
Every array has an env axis: evaluation plays one env (``n_envs=1``), pretraining plays several
in parallel, and both learn through the same update.
"""

from __future__ import annotations

import numpy as np


class Rollout:
    """Storage for one rollout; preallocated so that collecting costs no allocation per step.

    Arrays are ``(n_steps, n_envs, ...)``; ``size`` counts timesteps per env. Scalars written to
    row ``t`` broadcast to every env, which is what the single-env agent relies on.
    """

    def __init__(
        self, n_steps: int, obs_shape: tuple[int, ...], action_dtype: type = np.int64, n_envs: int = 1
    ) -> None:
        self.n_envs = n_envs
        self.obs = np.zeros((n_steps, n_envs, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros((n_steps, n_envs), dtype=action_dtype)
        self.log_probs = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.values = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.rewards = np.zeros((n_steps, n_envs), dtype=np.float32)
        # terminal[t]: the episode ended by death/level end at step t (no bootstrap);
        # boundary[t]: an episode ended at step t for any reason (GAE must not cross it).
        self.terminal = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.boundary = np.zeros((n_steps, n_envs), dtype=np.float32)
        # Value of the observation after a truncated step, to bootstrap the time limit.
        self.bootstrap = np.zeros((n_steps, n_envs), dtype=np.float32)
        self.size = 0

    def add(
        self,
        obs: np.ndarray,
        action: int | np.ndarray,
        log_prob: float | np.ndarray,
        value: float | np.ndarray,
    ) -> None:
        t = self.size
        self.obs[t] = obs
        self.actions[t] = action
        self.log_probs[t] = log_prob
        self.values[t] = value
        self.terminal[t] = 0.0
        self.boundary[t] = 0.0
        self.bootstrap[t] = 0.0
        self.size += 1

    def advantages(
        self, last_value: float | np.ndarray, gamma: float, lam: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Generalized advantage estimates and value targets (returns), ``(size, n_envs)`` each."""
        n = self.size
        adv = np.zeros((n, self.n_envs), dtype=np.float32)
        gae = np.zeros(self.n_envs, dtype=np.float32)
        next_value = np.broadcast_to(np.asarray(last_value, dtype=np.float32), (self.n_envs,)).copy()
        for t in reversed(range(n)):
            ended = self.boundary[t] > 0
            # Terminal: nothing follows. Truncated: the value of the state it stopped in.
            next_value = np.where(ended, np.where(self.terminal[t] > 0, 0.0, self.bootstrap[t]), next_value)
            gae = np.where(ended, 0.0, gae)
            delta = self.rewards[t] + gamma * next_value - self.values[t]
            gae = (delta + gamma * lam * gae).astype(np.float32)
            adv[t] = gae
            next_value = self.values[t]
        return adv, adv + self.values[:n]

    def flat(self) -> dict[str, np.ndarray]:
        """The stored timesteps with the env axis folded in, as the update consumes them."""
        n = self.size
        return {
            "obs": self.obs[:n].reshape(-1, *self.obs.shape[2:]),
            "actions": self.actions[:n].reshape(-1),
            "log_probs": self.log_probs[:n].reshape(-1),
            "values": self.values[:n].reshape(-1),
        }


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """How much of the returns' variance the value estimates explain: 1 is perfect, 0 no better
    than a constant, below 0 worse (baselines' and SB3's definition; NaN when returns are constant)."""
    var = float(np.var(returns))
    return float("nan") if var == 0 else 1.0 - float(np.var(returns - values)) / var


def sample_actions(log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``log_probs`` ``(n, n_actions)``, drawn with numpy's generator.

    Both frameworks sample here, from the same seeded generator, so that given the same
    probabilities they pick the same actions (inverse-CDF: one uniform draw per row).
    """
    probs = np.exp(log_probs.astype(np.float64))
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1)
