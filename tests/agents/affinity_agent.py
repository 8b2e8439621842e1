"""Says which CPUs it may run on (for the --cpuset tests), then plays its budget with random buttons."""

import os

import gym_remote.client as grc
import gym_remote.exceptions as gre

print("cpus:", ",".join(str(c) for c in sorted(os.sched_getaffinity(0))), flush=True)
env = grc.RemoteEnv("tmp/sock")
try:
    env.reset()
    while True:
        ob, reward, done, _ = env.step(env.action_space.sample())
        if done:
            env.reset()
except gre.GymRemoteError as exc:
    print("exception", exc)
