"""Says whether it can reach the network (it must not, in the docker runtime), then plays."""

import socket

import gym_remote.client as grc
import gym_remote.exceptions as gre

try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    print("network: reachable", flush=True)
except OSError as exc:
    print(f"network: unreachable ({exc.__class__.__name__})", flush=True)
env = grc.RemoteEnv("tmp/sock")
try:
    env.reset()
    while True:
        ob, reward, done, _ = env.step(env.action_space.sample())
        if done:
            env.reset()
except gre.GymRemoteError as exc:
    print("exception", exc)
