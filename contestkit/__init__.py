"""contestkit: run, build, submit and host retro-game reinforcement-learning contests."""

__version__ = "0.1.0"
