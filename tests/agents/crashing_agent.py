"""Plays until it has finished two episodes, then crashes: its episodes must survive."""

import gym_remote.client as grc

env = grc.RemoteEnv("tmp/sock")
env.reset()
episodes = 0
while True:
    ob, reward, done, _ = env.step(env.action_space.sample())
    if done:
        episodes += 1
        if episodes == 2:
            raise RuntimeError("agent bug: tensor shape mismatch")
        env.reset()
