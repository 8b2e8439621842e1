"""Entry point: press random buttons until the budget ends, then exit 0.

Evaluation ends when the env side refuses the next step (timestep or wall-clock budget, or the
env went away); that arrives as a ``GymRemoteError``. It is the normal end of a run, so the agent
returns normally: a non-zero exit would make the results look like a crash.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

BRIDGE = "tmp/sock"  # relative to the working directory, as in the 2018 contest


def choose(obs: np.ndarray, rng: np.random.Generator, n_buttons: int) -> np.ndarray:
    """The policy: each of the buttons pressed with probability 1/2, ignoring the screen."""
    return rng.integers(0, 2, size=n_buttons, dtype=np.uint8)


def run(env: Any, seed: int = 0) -> dict[str, Any]:
    """Play ``env`` (gymnasium API) until it raises a budget error; returns a short summary."""
    from contestkit.bridge.errors import GymRemoteError

    rng = np.random.default_rng(seed)
    n_buttons = len(getattr(env, "buttons", None) or range(12))
    timesteps = episodes = 0
    episode_reward = 0.0
    try:
        obs, _ = env.reset()
        while True:
            obs, reward, terminated, truncated, _ = env.step(choose(obs, rng, n_buttons))
            timesteps += 1
            episode_reward += reward
            if terminated or truncated:
                episodes += 1
                print(f"episode {episodes}: reward {episode_reward:.1f}", flush=True)
                episode_reward = 0.0
                obs, _ = env.reset()
    except GymRemoteError as exc:
        print(f"budget ended the run after {timesteps} timesteps ({type(exc).__name__}: {exc})", flush=True)
    return {"timesteps": timesteps, "episodes": episodes}


def main() -> None:
    """Run against the contest env at ``tmp/sock``."""
    from contestkit.bridge.client import RemoteEnv

    env = RemoteEnv(BRIDGE, copy_obs=False)  # the policy reads each screen at once, never keeps it
    try:
        run(env, seed=int(os.environ.get("AGENT_SEED", "0")))
    finally:
        env.close()


if __name__ == "__main__":
    main()
