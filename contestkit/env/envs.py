"""The contest environment, built exactly as the 2018 evaluation server built it.

One class, used by the env process of every runtime (local processes, Docker, the contest
server) and by in-process training, so that what an agent sees locally is what it is scored on:

* the full 224x320x3 uint8 screen, the 12 filtered Genesis buttons, the contest scenario;
* sticky frame skip: 4 frames a timestep; on the first frame the previous action is kept with
  probability 0.25 (it then runs 5 frames and the new one 3), from the second frame on the new
  action holds;
* 4,500 timesteps an episode; done on game over, level end or that limit.

The frame loop drives the emulator directly rather than calling ``RetroEnv.step`` per frame:
that skips three screen grabs and three info dictionaries per timestep that the contest never
exposed, which makes every runtime about a quarter faster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from contestkit.env.games import Level, resolve_level, retro

FRAME_SKIP = 4
STICKY_PROB = 0.25
EPISODE_TIMESTEPS = 4500
OBS_SHAPE = (224, 320, 3)
NUM_BUTTONS = 12


class InvalidActionError(ValueError):
    """The agent's action is not one 0/1 value per button (its fault, not the emulator's)."""


class ContestEnv(gym.Env):
    """A contest level with sticky frame skip and the episode limit (gymnasium API).

    ``step`` returns ``terminated`` for game over or level end and ``truncated`` when the
    4,500-timestep limit ends the episode; the 2018 API's ``done`` is their ``or``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        level: Level,
        *,
        seed: int | None = None,
        frame_skip: int = FRAME_SKIP,
        sticky_prob: float = STICKY_PROB,
        max_episode_steps: int = EPISODE_TIMESTEPS,
        record_dir: Path | None = None,
    ) -> None:
        stable_retro = retro()
        self.level = level
        self.frame_skip = frame_skip
        self.sticky_prob = sticky_prob
        self.max_episode_steps = max_episode_steps
        self._retro = stable_retro.make(
            level.emulator_game,
            state=level.state,
            scenario=level.scenario,
            use_restricted_actions=stable_retro.Actions.FILTERED,
            inttype=stable_retro.data.Integrations.ALL,
            render_mode=None,
        )
        if record_dir is not None:
            Path(record_dir).mkdir(parents=True, exist_ok=True)
            self._retro.auto_record(str(record_dir))
        self.buttons: list[str] = list(self._retro.buttons)
        self.observation_space = gym.spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8)
        self.action_space = gym.spaces.MultiBinary(len(self.buttons))
        self._rng = np.random.default_rng(seed)
        self._cur_mask: np.ndarray | None = None
        self._episode_steps = 0
        self._needs_reset = True

    # The contest's filtered action space turns a 12-button press into the buttons actually
    # held (Up+Down and the start menu are dropped).
    def _mask(self, action: Any) -> np.ndarray:
        flat = np.asarray(action).reshape(-1)
        buttons = flat.astype(np.uint8)
        # stable-retro reads each value as a bit to shift, so a 2 would press the next button:
        # anything but one 0/1 per button is refused, not silently misread (-1 casts to 255).
        if buttons.size != len(self.buttons) or buttons.tobytes().strip(b"\x00\x01"):
            raise InvalidActionError(
                f"an action is {len(self.buttons)} button values of 0 or 1, got {np.array2string(flat)}"
            )
        return self._retro.action_to_array(buttons)[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, _ = self._retro.reset()
        self._cur_mask = None
        self._episode_steps = 0
        self._needs_reset = False
        return obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._needs_reset:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        r = self._retro
        em, data, movie = r.em, r.data, r.movie
        new_mask = self._mask(action)
        total = 0.0
        terminated = False
        for i in range(self.frame_skip):
            if self._cur_mask is None or i == 1:
                self._cur_mask = new_mask
            elif i == 0 and self._rng.random() > self.sticky_prob:
                self._cur_mask = new_mask
            mask = self._cur_mask
            if movie:
                for b in range(len(mask)):
                    movie.set_key(b, int(mask[b]), 0)
                movie.step()
            em.set_button_mask(mask, 0)
            em.step()
            data.update_ram()
            total += data.current_reward()
            if data.is_done():
                terminated = True
                break
        obs = r.get_screen()
        r.img = obs
        self._episode_steps += 1
        truncated = not terminated and self._episode_steps >= self.max_episode_steps
        if terminated or truncated:
            self._needs_reset = True
        return obs, float(total), terminated, truncated, dict(data.lookup_all())

    def render(self) -> np.ndarray:
        return self._retro.get_screen()

    def close(self) -> None:
        retro_env = getattr(self, "_retro", None)
        if retro_env is not None:
            retro_env.stop_record()
            retro_env.close()
            self._retro = None


def make_contest_env(
    game: str,
    state: str | None = None,
    seed: int | None = 0,
    record_dir: Path | None = None,
    **kwargs: Any,
) -> ContestEnv:
    """The contest environment for one level, checked for typos and a missing ROM first."""
    return ContestEnv(resolve_level(game, state), seed=seed, record_dir=record_dir, **kwargs)
