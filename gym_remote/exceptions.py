"""The 2018 exception names; every budget end is a ``GymRemoteError``."""

from contestkit.bridge.errors import (
    EnvError,
    EnvGoneError,
    GymRemoteError,
    ProtocolError,
    ResetError,
    ServerDisconnectError,
    TimestepTimeoutError,
    WallClockTimeoutError,
)

__all__ = [
    "EnvError",
    "EnvGoneError",
    "GymRemoteError",
    "ProtocolError",
    "ResetError",
    "ServerDisconnectError",
    "TimestepTimeoutError",
    "WallClockTimeoutError",
]
