"""The contest environment: observation, buttons, sticky frame skip, episode limit (real emulator)."""

from __future__ import annotations

import numpy as np
import pytest

from contestkit.env.envs import EPISODE_TIMESTEPS, FRAME_SKIP, STICKY_PROB, ContestEnv
from contestkit.env.games import RomMissingError, resolve_level
from contestkit.errors import NotFoundError
from tests.support.paths import GAME, STATE


class RecordingEmulator:
    """Wraps the real emulator and records the button mask of every frame it runs."""

    def __init__(self, em):
        self._em = em
        self.frames: list[tuple[int, ...]] = []
        self._mask: tuple[int, ...] = ()

    def set_button_mask(self, mask, player=0):
        self._mask = tuple(int(x) for x in mask)
        self._em.set_button_mask(mask, player)

    def step(self):
        self.frames.append(self._mask)
        self._em.step()

    def __getattr__(self, name):
        return getattr(self._em, name)


def _instrumented(seed):
    env = ContestEnv(resolve_level(GAME, STATE), seed=seed)
    rec = RecordingEmulator(env._retro.em)
    env._retro.em = rec
    return env, rec


# Two actions whose filtered button masks differ (B and C fire in Airstriker).
A = np.zeros(12, np.uint8)
A[0] = 1
B = np.zeros(12, np.uint8)
B[8] = 1


def _sticky_decisions(seed, steps=3000):
    env, rec = _instrumented(seed)
    env.reset()
    mask_a, mask_b = tuple(env._mask(A)), tuple(env._mask(B))
    assert mask_a != mask_b
    decisions, later_frames_new = [], []
    prev = None
    for t in range(steps):
        action, mask = (A, mask_a) if t % 2 == 0 else (B, mask_b)
        start = len(rec.frames)
        _, _, term, trunc, _ = env.step(action)
        frames = rec.frames[start:]
        if prev is not None and len(frames) == FRAME_SKIP:
            decisions.append(frames[0] == prev)  # True: the previous action was kept (sticky)
            later_frames_new.extend(f == mask for f in frames[1:])
        prev = mask
        if term or trunc:
            env.reset()
            prev = None
    env.close()
    return decisions, later_frames_new


def test_observation_and_buttons():
    env = ContestEnv(resolve_level(GAME, STATE), seed=0)
    obs, info = env.reset()
    assert obs.shape == (224, 320, 3) and obs.dtype == np.uint8
    assert env.action_space.n == 12
    assert env.buttons == ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]
    obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs2.shape == (224, 320, 3) and isinstance(reward, float)
    env.close()


def test_sticky_frame_skip_statistics():
    decisions, later = _sticky_decisions(seed=1)
    assert len(decisions) > 2500
    p = sum(decisions) / len(decisions)
    # Binomial sd at n=2500, p=0.25 is about 0.009: 4 sd either side.
    assert abs(p - STICKY_PROB) < 0.035, p
    # From the second frame of a timestep on, the new action always holds.
    assert all(later)


def test_sticky_frame_skip_is_seeded():
    a, _ = _sticky_decisions(seed=7, steps=400)
    b, _ = _sticky_decisions(seed=7, steps=400)
    c, _ = _sticky_decisions(seed=8, steps=400)
    assert a == b
    assert a != c


def test_first_step_after_reset_uses_new_action():
    env, rec = _instrumented(seed=0)
    env.reset()
    env.step(B)
    assert len(set(rec.frames[-FRAME_SKIP:])) == 1
    env.close()


def test_episode_limit_truncates():
    assert EPISODE_TIMESTEPS == 4500
    env = ContestEnv(resolve_level(GAME, STATE), seed=0, max_episode_steps=25)
    env.reset()
    noop = np.zeros(12, np.uint8)
    for _t in range(25):
        _, _, terminated, truncated, _ = env.step(noop)
        if terminated:
            pytest.skip("the game ended before the short limit; cannot observe truncation")
    assert truncated and not terminated
    with pytest.raises(RuntimeError):
        env.step(noop)
    env.close()


def test_game_over_terminates_episode():
    env = ContestEnv(resolve_level(GAME, STATE), seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    for _t in range(EPISODE_TIMESTEPS):
        _, _, terminated, truncated, _ = env.step(rng.integers(0, 2, 12))
        if terminated or truncated:
            break
    assert terminated, "a random Airstriker pilot dies well before 4,500 timesteps"
    env.close()


def test_unknown_names_suggest_nearest():
    with pytest.raises(NotFoundError, match="Did you mean Airstriker-Genesis"):
        resolve_level("Airstriker", "Level1")
    with pytest.raises(NotFoundError, match="Did you mean Level1"):
        resolve_level(GAME, "Levl1")


def test_missing_sonic_rom_is_a_clear_error():
    with pytest.raises(RomMissingError, match="contestkit roms import"):
        resolve_level("SonicTheHedgehog-Genesis", "GreenHillZone.Act1")
    # The level itself is valid: the contest scenario is picked for Sonic.
    level = resolve_level("SonicTheHedgehog-Genesis", "GreenHillZone.Act1", check_rom=False)
    assert level.scenario == "contest" and level.emulator_game == "SonicTheHedgehog-Genesis-v0"
