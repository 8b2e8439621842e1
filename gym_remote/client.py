"""The 2018 ``gym_remote.client.RemoteEnv``: ``reset() -> obs``, ``step() -> 4-tuple``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from contestkit.bridge.client import DEFAULT_CONNECT_TIMEOUT
from contestkit.bridge.client import RemoteEnv as _GymnasiumRemoteEnv


class RemoteEnv:
    """The contest env as the 2018 contest's agents saw it (old gym API).

    Observations are always copies: 2018 agents kept them in frame stacks and replay buffers.
    """

    def __init__(
        self, directory: str | os.PathLike[str] = "tmp/sock", *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    ) -> None:
        self._env = _GymnasiumRemoteEnv(directory, connect_timeout=connect_timeout, copy_obs=True)
        self.action_space = self._env.action_space
        self.observation_space = self._env.observation_space
        self.buttons = self._env.buttons
        self.game = self._env.game
        self.state = self._env.state
        self.reward_range = (-float("inf"), float("inf"))
        self.metadata: dict[str, Any] = {}

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        return obs

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict]:
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs, reward, terminated or truncated, info

    def close(self) -> None:
        self._env.close()

    def render(self, mode: str = "rgb_array") -> np.ndarray:
        return self._env.render()

    @property
    def unwrapped(self) -> RemoteEnv:
        return self
