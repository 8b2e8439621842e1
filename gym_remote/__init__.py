"""The 2018 Retro Contest agent API, so that contest agents run unchanged.

``import gym_remote.client as grc; env = grc.RemoteEnv('tmp/sock')`` gives the 4-tuple gym API
over contestkit's bridge; ``gym_remote.exceptions`` holds the errors a budget end raises.
"""
