"""JERK ("Just Enough Retained Knowledge"), the contest report's scripted baseline.

Written against the 2018 ``gym_remote`` API, so it is also a contest agent that runs unchanged:

    contestkit eval SonicTheHedgehog-Genesis GreenHillZone.Act1 --runtime local --agent examples/jerk_agent.py

The idea: Sonic levels are mostly "run right and jump"; when running right stops paying, back off
a little. Every finished episode remembers the action sequence up to its best cumulative reward,
and as the budget goes by the agent replays the best sequence found so far more and more often
(the probability of replaying grows linearly from ``EXPLOIT_BIAS`` to 1 over the budget), so
late episodes score what early exploration discovered. It keeps no neural network and learns
nothing but that replay list, which made it a surprisingly strong baseline in 2018.

Buttons by index (Genesis order): 0 B (jump), 6 LEFT, 7 RIGHT.
"""

from __future__ import annotations

import os
import random

import numpy as np

import gym_remote.client as grc
import gym_remote.exceptions as gre

EXPLOIT_BIAS = 0.25
TOTAL_TIMESTEPS = int(os.environ.get("JERK_TOTAL_TIMESTEPS", 1_000_000))  # the contest's budget
if "JERK_SEED" in os.environ:  # benchmarks fix it; in a contest every run draws its own
    random.seed(int(os.environ["JERK_SEED"]))
BUTTON_JUMP, BUTTON_LEFT, BUTTON_RIGHT = 0, 6, 7


class TrackedEnv:
    """Records actions and cumulative rewards of the current episode, and counts all timesteps."""

    def __init__(self, env: grc.RemoteEnv) -> None:
        self.env = env
        self.n_buttons = len(getattr(env, "buttons", None) or range(12))
        self.action_history: list[np.ndarray] = []
        self.reward_history: list[float] = []
        self.total_reward = 0.0
        self.total_steps_ever = 0

    def best_sequence(self) -> list[np.ndarray]:
        """Actions from the start of the episode up to its highest cumulative reward."""
        best = int(np.argmax(self.reward_history))
        return self.action_history[: best + 1]

    def reset(self) -> np.ndarray:
        self.action_history = []
        self.reward_history = []
        self.total_reward = 0.0
        return self.env.reset()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        self.total_steps_ever += 1
        self.action_history.append(action.copy())
        obs, reward, done, info = self.env.step(action)
        self.total_reward += reward
        self.reward_history.append(self.total_reward)
        return obs, reward, done, info


def move(
    env: TrackedEnv, num_steps: int, left: bool = False, jump_prob: float = 0.1, jump_repeat: int = 4
) -> tuple[float, bool]:
    """Run one way for ``num_steps``, jumping at random (a jump is held ``jump_repeat`` steps)."""
    total_reward = 0.0
    done = False
    steps_taken = 0
    jumping_steps_left = 0
    while not done and steps_taken < num_steps:
        action = np.zeros(env.n_buttons, dtype=np.uint8)
        action[BUTTON_LEFT] = left
        action[BUTTON_RIGHT] = not left
        if jumping_steps_left > 0:
            action[BUTTON_JUMP] = 1
            jumping_steps_left -= 1
        elif random.random() < jump_prob:
            jumping_steps_left = jump_repeat - 1
            action[BUTTON_JUMP] = 1
        _, reward, done, _ = env.step(action)
        total_reward += reward
        steps_taken += 1
    return total_reward, done


def exploit(env: TrackedEnv, sequence: list[np.ndarray]) -> float:
    """Replay ``sequence`` from the start of a new episode, then do nothing until it ends."""
    env.reset()
    done = False
    idx = 0
    while not done:
        action = sequence[idx] if idx < len(sequence) else np.zeros(env.n_buttons, dtype=np.uint8)
        _, _, done, _ = env.step(action)
        idx += 1
    return env.total_reward


def run(env: TrackedEnv) -> None:
    """Explore with move/back-off; replay the best sequence ever more often. Runs until stopped."""
    new_episode = True
    solutions: list[tuple[list[float], list[np.ndarray]]] = []
    while True:
        if new_episode:
            replay_prob = EXPLOIT_BIAS + env.total_steps_ever / TOTAL_TIMESTEPS
            if solutions and random.random() < replay_prob:
                solutions.sort(key=lambda s: float(np.mean(s[0])))
                best_rewards, best_sequence = solutions[-1]
                best_rewards.append(exploit(env, best_sequence))
                print(f"replayed best with reward {best_rewards[-1]:.1f}", flush=True)
                continue
            env.reset()
            new_episode = False
        reward, new_episode = move(env, 100)
        if not new_episode and reward <= 0:
            # Running right stopped paying: back off a little, then try again.
            _, new_episode = move(env, 70, left=True)
        if new_episode:
            solutions.append(([max(env.reward_history)], env.best_sequence()))


def main() -> None:
    env = TrackedEnv(grc.RemoteEnv("tmp/sock"))
    try:
        run(env)
    except gre.GymRemoteError as exc:
        # The budget ended the run (or the env went away): the normal end, exit 0.
        print(f"exception {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
