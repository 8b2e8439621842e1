"""Exceptions the agent sees when the env side ends or refuses a call.

They are the 2018 ``gym_remote.exceptions`` names (re-exported there), so a contest agent's
``except gre.GymRemoteError`` ends it cleanly whichever budget ran out.
"""

from __future__ import annotations


class GymRemoteError(Exception):
    """Base of every error raised by the remote env client."""


class TimestepTimeoutError(GymRemoteError):
    """The level's timestep budget is used up."""


class WallClockTimeoutError(GymRemoteError):
    """The level's wall-clock budget is used up."""


class ResetError(GymRemoteError):
    """``reset()`` was called in the middle of an episode; the contest refused that."""


class EnvGoneError(GymRemoteError):
    """The env side closed the connection or never answered (it exited, or was stopped)."""


class ProtocolError(GymRemoteError):
    """A message on the bridge was malformed; the env side reports and ends the session."""


class EnvError(GymRemoteError):
    """The emulator failed inside the env process."""


# The name 2018 agents knew for a vanished env.
ServerDisconnectError = EnvGoneError
