"""A random agent on contestkit's gymnasium-API client (``reset() -> (obs, info)``, 5-tuple step).

Run it with ``contestkit eval Airstriker-Genesis Level1 --agent examples/gymnasium_random_agent.py``
or, as a function, ``--agent gymnasium_random_agent:main`` from this directory.
"""

from contestkit.bridge.client import RemoteEnv
from contestkit.bridge.errors import GymRemoteError


def main() -> None:
    env = RemoteEnv("tmp/sock")
    print(f"playing {env.game} {env.state} with buttons {env.buttons}")
    right = env.buttons.index("RIGHT") if "RIGHT" in env.buttons else None
    episodes = 0
    try:
        env.reset()
        while True:
            action = env.action_space.sample()
            if right is not None:
                action[right] = 1
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                episodes += 1
                env.reset()
    except GymRemoteError as exc:
        print(f"budget over after {episodes} episodes: {exc}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
