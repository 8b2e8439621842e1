"""The agent side of the bridge, with the gymnasium API.

This module needs only numpy and the standard library (gymnasium is used for the spaces when it
is installed), so agent images stay small and never need the emulator.

Observations arrive in a memory-mapped file the env writes; ``step`` returns a copy by default,
because agents keep observations (frame stacks, replay buffers) and the next step overwrites the
shared buffer. ``copy_obs=False`` hands out a read-only view instead, for agents that preprocess
each frame at once and want no per-step allocation at all.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from contestkit.bridge import errors as e
from contestkit.bridge import protocol as p
from contestkit.runs.levelrun import CONNECT_TIMEOUT as DEFAULT_CONNECT_TIMEOUT

DEFAULT_BRIDGE = "tmp/sock"

_ERRORS: dict[int, type[e.GymRemoteError]] = {
    p.ERR_TIMESTEP_BUDGET: e.TimestepTimeoutError,
    p.ERR_WALLCLOCK: e.WallClockTimeoutError,
    p.ERR_RESET: e.ResetError,
    p.ERR_BAD_REQUEST: e.ProtocolError,
    p.ERR_ENV: e.EnvError,
}


_unpack_reply = p.REPLY.unpack


def _error(status: int, payload: bytes) -> e.GymRemoteError:
    message = payload.decode(errors="replace")
    try:
        message = json.loads(message)["error"]
    except (ValueError, KeyError, TypeError):
        pass
    return _ERRORS.get(status, e.GymRemoteError)(message)


class _MultiBinary:
    """Stand-in for ``gymnasium.spaces.MultiBinary`` when gymnasium is not installed."""

    def __init__(self, n: int, seed: int | None = None) -> None:
        self.n = n
        self.shape = (n,)
        self.dtype = np.dtype(np.int8)
        self._rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        return self._rng.integers(0, 2, size=self.n, dtype=np.int8)

    def seed(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def contains(self, x: Any) -> bool:
        a = np.asarray(x)
        return a.shape == self.shape and bool(np.all((a == 0) | (a == 1)))


class _Box:
    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dtype = np.dtype(np.uint8)
        self.low = 0
        self.high = 255


def _spaces(n_buttons: int, obs_shape: tuple[int, ...]) -> tuple[Any, Any]:
    try:
        import gymnasium as gym
    except ImportError:
        return _MultiBinary(n_buttons), _Box(obs_shape)
    return gym.spaces.MultiBinary(n_buttons), gym.spaces.Box(0, 255, obs_shape, dtype=np.uint8)


def _resolve_ctl(path: str | os.PathLike[str]) -> Path:
    """Accept the bridge directory (``tmp/sock``) or the socket inside it."""
    path = Path(path)
    return path if path.name == p.CTL_NAME else path / p.CTL_NAME


class RemoteEnv:
    """A contest level served by the env process, with the gymnasium API.

    ``reset() -> (obs, info)``; ``step(action) -> (obs, reward, terminated, truncated, info)``.
    Budget ends and refusals raise :mod:`contestkit.bridge.errors` exceptions.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_BRIDGE,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        copy_obs: bool = True,
    ) -> None:
        self.copy_obs = copy_obs
        ctl = _resolve_ctl(path)
        self._sock = self._connect(ctl, connect_timeout)
        self._reply = bytearray(p.REPLY.size)
        self._reply_view = memoryview(self._reply)
        self._sock.sendall(p.MAGIC)
        status, _, _, _, payload = self._call_raw()
        if status != p.OK:
            raise e.ProtocolError(f"the env refused the connection: {payload.decode(errors='replace')}")
        self.hello = p.Hello.decode(payload)
        self.game: str = self.hello.game
        self.state: str = self.hello.state
        self.buttons: list[str] = list(self.hello.buttons)
        shape = tuple(self.hello.obs_shape)
        self.action_space, self.observation_space = _spaces(len(self.buttons), shape)
        self.timestep_limit = self.hello.timestep_limit
        self.wallclock_limit = self.hello.wallclock_limit

        obs_path = ctl.parent / self.hello.obs_file
        fd = os.open(obs_path, os.O_RDONLY)
        try:
            self._map = mmap.mmap(fd, int(np.prod(shape)), access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self._obs = np.ndarray(shape, dtype=np.uint8, buffer=self._map)
        self._obs.flags.writeable = False
        self._req = bytearray(p.REQUEST_HEADER + len(self.buttons))
        self._action = np.frombuffer(self._req, dtype=np.uint8, offset=p.REQUEST_HEADER)
        self._closed = False

    @staticmethod
    def _connect(ctl: Path, timeout: float) -> socket.socket:
        """Wait for the env to open the bridge (it may start after the agent)."""
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                target = str(ctl)
                if len(os.fsencode(ctl)) >= 100:  # unix socket paths are short; go relative
                    target = os.path.relpath(ctl)
                sock.connect(target)
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                last = exc
            if time.monotonic() >= deadline:
                raise e.EnvGoneError(f"no remote env answered at {ctl} within {timeout:g} s ({last})")
            time.sleep(0.02)

    # -- wire ----------------------------------------------------------------------------------
    def _recv(self, view: memoryview) -> None:
        """Fill ``view`` from the env; any way the env can vanish is an EnvGoneError (a GymRemoteError)."""
        try:
            if not p.recv_exact(self._sock, view):
                raise e.EnvGoneError("the remote env closed the connection")
        except OSError as exc:  # ConnectionError included
            raise e.EnvGoneError(f"the remote env went away: {exc}") from None

    def _call_raw(self) -> tuple[int, bool, bool, float, bytes]:
        self._recv(self._reply_view)
        return self._decode_reply()

    def _decode_reply(self) -> tuple[int, bool, bool, float, bytes]:
        """The reply header already in the buffer, and its payload read from the socket."""
        status, terminated, truncated, n, reward = _unpack_reply(self._reply)
        payload = b""
        if n:
            buf = bytearray(n)
            self._recv(memoryview(buf))
            payload = bytes(buf)
        return status, bool(terminated), bool(truncated), reward, payload

    def _call(self, op: int) -> tuple[bool, bool, float, dict]:
        if self._closed:
            raise e.EnvGoneError("the remote env connection is closed")
        self._req[0] = op
        try:
            self._sock.sendall(self._req)
        except OSError as exc:
            raise e.EnvGoneError(f"the remote env went away: {exc}") from None
        status, terminated, truncated, reward, payload = self._call_raw()
        if status != p.OK:
            raise _error(status, payload)
        return terminated, truncated, reward, (json.loads(payload) if payload else {})

    def _observation(self) -> np.ndarray:
        return self._obs.copy() if self.copy_obs else self._obs

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode. Refused with ResetError in the middle of one, as the contest did."""
        self._call(p.OP_RESET)
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One contest timestep (4 emulator frames with sticky frame skip).

        The common case (a full 16-byte OK reply with no payload) is handled inline: this is the
        loop an agent runs a million times a level.
        """
        try:
            self._action[:] = action
            if self._req[p.REQUEST_HEADER :].strip(b"\x00\x01"):  # a 2 or a -1 (255 once cast)
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            raise ValueError(
                f"an action is {len(self.buttons)} button values (0 or 1), got {np.asarray(action)!r}"
            ) from None
        if self._closed:
            raise e.EnvGoneError("the remote env connection is closed")
        req = self._req
        req[0] = p.OP_STEP
        try:
            self._sock.sendall(req)
            got = self._sock.recv_into(self._reply)
        except OSError as exc:
            raise e.EnvGoneError(f"the remote env went away: {exc}") from None
        if got == p.REPLY.size:
            status, terminated, truncated, n, reward = _unpack_reply(self._reply)
            if not status and not n:
                return (self._obs.copy() if self.copy_obs else self._obs), reward, terminated != 0, truncated != 0, {}
        elif got == 0:
            raise e.EnvGoneError("the remote env closed the connection")
        else:
            self._recv(self._reply_view[got:])
        return self._finish_step()

    def _finish_step(self) -> tuple[np.ndarray, float, bool, bool, dict]:
        """The rare replies: an error status, or an info payload to read."""
        status, terminated, truncated, reward, payload = self._decode_reply()
        if status != p.OK:
            raise _error(status, payload)
        return self._observation(), reward, terminated, truncated, (json.loads(payload) if payload else {})

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._req[0] = p.OP_CLOSE
            self._sock.sendall(self._req)
        except OSError:
            pass
        self._closed = True
        self._sock.close()
        del self._obs  # the last reference of ours into the shared mapping
        try:
            self._map.close()
        except BufferError:  # an observation view handed out (copy_obs=False) is still alive
            pass

    def render(self) -> np.ndarray:
        if self._closed:
            raise e.EnvGoneError("the remote env connection is closed")
        return self._obs.copy()

    def __enter__(self) -> RemoteEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def unwrapped(self) -> RemoteEnv:
        return self
