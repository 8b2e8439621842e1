"""A slow contest agent, for interrupting an evaluation half-way."""

import time

import gym_remote.client as grc
import gym_remote.exceptions as gre

env = grc.RemoteEnv("tmp/sock")
try:
    env.reset()
    while True:
        ob, reward, done, _ = env.step(env.action_space.sample())
        time.sleep(0.002)
        if done:
            env.reset()
except gre.GymRemoteError as exc:
    print("exception", exc)
