"""An agent given as MODULE:FUNCTION."""

from contestkit.bridge.client import RemoteEnv
from contestkit.bridge.errors import GymRemoteError


def play() -> None:
    env = RemoteEnv("tmp/sock")
    try:
        env.reset()
        while True:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
    except GymRemoteError as exc:
        print("done:", exc)
