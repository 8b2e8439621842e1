"""Rollout storage and generalized advantage estimation, shared by both PPO templates.

Pure numpy: the framework-specific part of PPO (the network and its update) is in ``ppo.py``.
"""

from __future__ import annotations

import numpy as np


class Rollout:
    """Storage for one rollout; preallocated so that collecting costs no allocation per step."""

    def __init__(self, n_steps: int, obs_shape: tuple[int, ...], action_dtype: type = np.int64) -> None:
        self.obs = np.zeros((n_steps, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros(n_steps, dtype=action_dtype)
        self.log_probs = np.zeros(n_steps, dtype=np.float32)
        self.values = np.zeros(n_steps, dtype=np.float32)
        self.rewards = np.zeros(n_steps, dtype=np.float32)
        # terminal[t]: the episode ended by death/level end at step t (no bootstrap);
        # boundary[t]: an episode ended at step t for any reason (GAE must not cross it).
        self.terminal = np.zeros(n_steps, dtype=np.float32)
        self.boundary = np.zeros(n_steps, dtype=np.float32)
        # Value of the observation after a truncated step, to bootstrap the time limit.
        self.bootstrap = np.zeros(n_steps, dtype=np.float32)
        self.size = 0

    def add(self, obs: np.ndarray, action: int, log_prob: float, value: float) -> None:
        t = self.size
        self.obs[t] = obs
        self.actions[t] = action
        self.log_probs[t] = log_prob
        self.values[t] = value
        self.terminal[t] = 0.0
        self.boundary[t] = 0.0
        self.bootstrap[t] = 0.0
        self.size += 1

    def advantages(self, last_value: float, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """Generalized advantage estimates and value targets (returns)."""
        n = self.size
        adv = np.zeros(n, dtype=np.float32)
        gae = 0.0
        next_value = last_value
        for t in reversed(range(n)):
            if self.boundary[t]:
                # Terminal: nothing follows. Truncated: the value of the state it stopped in.
                next_value = 0.0 if self.terminal[t] else float(self.bootstrap[t])
                gae = 0.0
            delta = self.rewards[t] + gamma * next_value - self.values[t]
            gae = delta + gamma * lam * gae
            adv[t] = gae
            next_value = self.values[t]
        return adv, adv + self.values[:n]
