"""A deterministic agent: it cycles through three button presses, one per timestep.

With a fixed sequence of actions, any difference between two runs' recorded button presses comes
from the env's sticky-action draws alone: what the seed tests compare."""

import gym_remote.client as grc
import gym_remote.exceptions as gre

BUTTONS = (7, 6, 0)  # RIGHT, LEFT, B


def main():
    env = grc.RemoteEnv("tmp/sock")
    env.reset()
    step = 0
    while True:
        action = [0] * 12
        action[BUTTONS[step % len(BUTTONS)]] = 1
        step += 1
        _, _, done, _ = env.step(action)
        if done:
            env.reset()


if __name__ == "__main__":
    try:
        main()
    except gre.GymRemoteError as e:
        print("exception", e)
