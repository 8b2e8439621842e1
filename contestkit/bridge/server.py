"""The env side of the bridge: serves one agent, enforces the contest's budgets.

It owns everything the contest server enforced: the timestep and wall-clock budgets, the refusal
of a reset in the middle of an episode, and the episode log. Every way a session can end is
recorded as an :class:`Outcome` rather than raised, because the env process must always get to
write the results of the episodes that did finish.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contestkit.bridge import protocol as p
from contestkit.bridge.protocol import EndReason
from contestkit.env.envs import InvalidActionError
from contestkit.env.monitor import EpisodeLog
from contestkit.runs.levelrun import CONNECT_TIMEOUT, TIMESTEP_LIMIT, WALLCLOCK_LIMIT

# After a budget runs out the agent gets its exception on its next call; give it this long to
# make that call and go away before the env process ends the session itself.
AFTER_BUDGET_GRACE = 10.0
# How late past the wall-clock deadline a thinking agent may be noticed (see _arm_timeout).
WALLCLOCK_SLICE = 1.0


@dataclass
class Budgets:
    """The per-level limits of the contest: 1M timesteps and 12 hours by default."""

    timestep_limit: int = TIMESTEP_LIMIT
    wallclock_limit: float = WALLCLOCK_LIMIT


@dataclass
class Outcome:
    """How a session ended. ``error`` is a sentence for the results when the agent misbehaved.

    Whose doing the end was (agent, budget, env) is the reason's own ``fault``.
    """

    end_reason: EndReason
    error: str | None = None
    timesteps: int = 0
    wall_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class Stopped(BaseException):
    """Raised inside the serve loop when the env process is asked to stop (SIGTERM, Ctrl-C).

    A BaseException, like KeyboardInterrupt, because the signal can land anywhere, inside the
    emulator step included: an ``except Exception`` there must not turn a stop into an
    "emulator error".
    """


def _bind(bridge_dir: Path) -> socket.socket:
    """Bind the control socket, even when the absolute path is longer than a unix socket allows."""
    path = bridge_dir / p.CTL_NAME
    if path.exists() or path.is_symlink():
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if len(os.fsencode(path)) < 100:
        sock.bind(str(path))
    else:
        cwd = os.getcwd()
        try:
            os.chdir(bridge_dir)
            sock.bind(p.CTL_NAME)
        finally:
            os.chdir(cwd)
    os.chmod(path, 0o777)
    sock.listen(1)
    return sock


class BridgeServer:
    """Serves a gymnasium-API env (a :class:`contestkit.env.envs.ContestEnv`) to one agent."""

    def __init__(
        self,
        bridge_dir: Path,
        env: Any,
        hello: p.Hello,
        log: EpisodeLog,
        budgets: Budgets,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        expose_info: bool = False,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        progress_every: float = 0.5,
        start: float | None = None,
        after_budget_grace: float = AFTER_BUDGET_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after_budget_grace = after_budget_grace
        self.clock = clock  # what the budgets and the grace are measured on; tests inject one to advance it
        self.bridge_dir = Path(bridge_dir)
        self.bridge_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.hello = hello
        self.log = log
        self.budgets = budgets
        self.connect_timeout = connect_timeout
        self.expose_info = expose_info
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.start = self.clock() if start is None else start
        self.deadline = self.start + budgets.wallclock_limit
        self.n_buttons = len(hello.buttons)
        self.timesteps = 0
        self.stop_requested = False
        self.first_step_at: float | None = None  # wall time of the first served step (startup benches)

        shape = tuple(hello.obs_shape)
        nbytes = int(np.prod(shape))
        obs_path = self.bridge_dir / p.OBS_NAME
        with open(obs_path, "wb") as f:
            f.truncate(nbytes)
        os.chmod(obs_path, 0o666)
        self._obs_fd = os.open(obs_path, os.O_RDWR)
        self._obs_map = mmap.mmap(self._obs_fd, nbytes)
        self._obs = np.ndarray(shape, dtype=np.uint8, buffer=self._obs_map)
        self._listener = _bind(self.bridge_dir)

    # -- helpers -------------------------------------------------------------------------------
    def _remaining(self) -> float:
        return self.deadline - self.clock()

    def _outcome(self, reason: EndReason, error: str | None = None, **details: Any) -> Outcome:
        return Outcome(
            end_reason=reason,
            error=error,
            timesteps=self.timesteps,
            wall_seconds=round(self.clock() - self.start, 3),
            details={"first_step_at": self.first_step_at, **details},
        )

    def progress(self) -> dict[str, Any]:
        rewards = self.log.episode_rewards
        elapsed = self.clock() - self.start
        return {
            "timesteps": self.timesteps,
            "timestep_limit": self.budgets.timestep_limit,
            "episodes": len(rewards),
            "last_episode_reward": rewards[-1] if rewards else None,
            "mean_episode_reward": (sum(rewards) / len(rewards)) if rewards else None,
            "elapsed": round(elapsed, 3),
            "wallclock_limit": self.budgets.wallclock_limit,
            "timesteps_per_second": round(self.timesteps / elapsed, 1) if elapsed > 0 else 0.0,
        }

    # -- the session ---------------------------------------------------------------------------
    def serve(self) -> Outcome:
        """Wait for the agent, serve it until a budget or the agent ends the session."""
        try:
            return self._serve()
        except Stopped:
            return self._outcome(EndReason.STOPPED, "evaluation stopped before the budget ran out")
        finally:
            self.close()

    def _accept(self) -> socket.socket | None:
        # Never 0: settimeout(0) would make the socket non-blocking (BlockingIOError, not a timeout).
        timeout = max(min(self.connect_timeout, self._remaining()), 1e-3)
        self._listener.settimeout(timeout)
        try:
            conn, _ = self._listener.accept()
        except (TimeoutError, BlockingIOError):
            return None
        conn.settimeout(None)
        return conn

    def _serve(self) -> Outcome:
        conn = self._accept()
        if conn is None and self._remaining() <= 0:
            return self._outcome(
                EndReason.WALLCLOCK_BUDGET, "the wall-clock budget ran out before the agent connected to the bridge"
            )
        if conn is None:
            return self._outcome(
                EndReason.NO_CONNECTION,
                f"the agent never connected to the bridge within {self.connect_timeout:g} s "
                "(does it open RemoteEnv('tmp/sock')?)",
            )
        with conn:
            magic = bytearray(len(p.MAGIC))
            try:
                conn.settimeout(min(30.0, max(self._remaining(), 0.1)))
                ok = p.recv_exact(conn, memoryview(magic))
            except (TimeoutError, ConnectionError):
                ok = False
            if not ok or bytes(magic) != p.MAGIC:
                self._reply(conn, p.ERR_BAD_REQUEST, msg="not a contestkit bridge client (bad greeting)")
                return self._outcome(
                    EndReason.BAD_REQUEST, f"the agent sent {bytes(magic)!r} instead of the bridge greeting"
                )
            self._reply(conn, p.OK, payload=self.hello.encode())
            return self._loop(conn)

    def _reply(
        self,
        conn: socket.socket,
        status: int,
        reward: float = 0.0,
        terminated: bool = False,
        truncated: bool = False,
        payload: bytes = b"",
        msg: str | None = None,
    ) -> None:
        if msg is not None:
            payload = json.dumps({"error": msg}).encode()
        header = p.REPLY.pack(status, terminated, truncated, len(payload), reward)
        try:
            conn.sendall(header + payload if payload else header)
        except OSError:
            pass

    def _budget_error(self) -> tuple[int, EndReason, str] | None:
        if self.timesteps >= self.budgets.timestep_limit:
            return (
                p.ERR_TIMESTEP_BUDGET,
                EndReason.TIMESTEP_BUDGET,
                f"timestep budget of {self.budgets.timestep_limit} used up",
            )
        if self._remaining() <= 0:
            return (
                p.ERR_WALLCLOCK,
                EndReason.WALLCLOCK_BUDGET,
                f"wall-clock budget of {self.budgets.wallclock_limit:g} s used up",
            )
        return None

    def _finish_after_budget(self, conn: socket.socket, reason: EndReason) -> Outcome:
        """Let the agent see its budget exception and leave, then end the session.

        The grace is one deadline: an agent that catches the exception and keeps calling gets the
        same answer each time, but not a session that never ends.
        """
        end = self.clock() + self.after_budget_grace
        buf = bytearray(64)
        try:
            while True:
                left = end - self.clock()
                if left <= 0:
                    break
                conn.settimeout(left)
                if not conn.recv_into(buf):
                    break
                # Any further call after the budget gets the same answer.
                self._reply(
                    conn,
                    p.ERR_TIMESTEP_BUDGET if reason == EndReason.TIMESTEP_BUDGET else p.ERR_WALLCLOCK,
                    msg="budget used up",
                )
        except OSError:
            pass
        return self._outcome(reason)

    def _arm_timeout(self, conn: socket.socket) -> None:
        """Let the kernel time out a receive near the wall-clock deadline (SO_RCVTIMEO).

        A Python-level socket timeout would cost a poll() per step; this costs nothing per step.
        SO_RCVTIMEO bounds each receive, not a deadline, so it is armed with a slice of at most
        WALLCLOCK_SLICE seconds and re-armed whenever a slice runs out before the deadline: an
        agent thinking past the deadline is caught within a slice.
        """
        remaining = min(max(self._remaining(), 0.001), WALLCLOCK_SLICE)
        sec = int(remaining)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", sec, int((remaining - sec) * 1e6)))

    def _loop(self, conn: socket.socket) -> Outcome:
        size = p.REQUEST_HEADER + self.n_buttons
        req = bytearray(size)
        view = memoryview(req)
        action = np.frombuffer(req, dtype=np.uint8, count=self.n_buttons, offset=p.REQUEST_HEADER)
        env, log, obs_buf = self.env, self.log, self._obs
        recv_into, sendall, monotonic = conn.recv_into, conn.sendall, self.clock
        pack, ok_header = p.REPLY.pack, p.REPLY.pack(p.OK, 0, 0, 0, 0.0)
        timestep_limit, deadline = self.budgets.timestep_limit, self.deadline
        needs_reset = True
        in_episode = False
        conn.settimeout(None)
        self._arm_timeout(conn)
        next_progress = monotonic() + self.progress_every
        while True:
            got = 0
            try:
                got = recv_into(req, size)
                if got == 0:
                    return self._outcome(EndReason.AGENT_CLOSED)
                if got < size and not p.recv_exact(conn, view[got:]):
                    raise ConnectionError("short request")
            except (BlockingIOError, TimeoutError):
                if got == 0 and monotonic() < deadline:
                    self._arm_timeout(conn)  # a slice ran out, not the budget: keep waiting
                    continue
                # The agent is thinking past the wall-clock budget: answer its next call, if it
                # comes within the grace period, with the wall-clock exception.
                return self._finish_after_budget(conn, EndReason.WALLCLOCK_BUDGET)
            except ConnectionError:
                return self._outcome(EndReason.AGENT_DISCONNECTED, "the agent disconnected in the middle of a message")
            if self.stop_requested:
                raise Stopped
            op = req[0]
            if op == p.OP_STEP or op == p.OP_RESET:
                if self.timesteps >= timestep_limit or monotonic() >= deadline:
                    budget = self._budget_error() or (p.ERR_WALLCLOCK, EndReason.WALLCLOCK_BUDGET, "budget used up")
                    status, reason, msg = budget
                    self._reply(conn, status, msg=msg)
                    return self._finish_after_budget(conn, reason)
            if op == p.OP_STEP:
                try:
                    if needs_reset:
                        env.reset()
                        needs_reset = False
                    obs, reward, terminated, truncated, info = env.step(action)
                except InvalidActionError as exc:
                    self._reply(conn, p.ERR_BAD_REQUEST, msg=str(exc))
                    return self._outcome(EndReason.BAD_REQUEST, f"the agent sent an invalid action: {exc}")
                except Exception as exc:  # the emulator itself failed: report, end the session
                    self._reply(conn, p.ERR_ENV, msg=f"emulator error: {exc}")
                    return self._outcome(EndReason.ENV_ERROR, f"the emulator failed: {exc}")
                obs_buf[...] = obs
                if not self.timesteps:
                    self.first_step_at = time.time()
                self.timesteps += 1
                done = terminated or truncated
                log.record(reward, done)
                in_episode = not done
                needs_reset = done
                if self.expose_info:
                    payload = json.dumps(info).encode()
                    message = pack(p.OK, terminated, truncated, len(payload), reward) + payload
                elif reward or done:
                    message = pack(p.OK, terminated, truncated, 0, reward)
                else:
                    message = ok_header  # most steps: nothing to pack
                try:
                    sendall(message)
                except OSError:
                    return self._outcome(
                        EndReason.AGENT_DISCONNECTED, "the agent disconnected while its step was served"
                    )
                if done or not self.timesteps & 63:
                    now = monotonic()
                    if now >= next_progress:
                        next_progress = now + self.progress_every
                        self._arm_timeout(conn)
                        if self.on_progress is not None:
                            self.on_progress(self.progress())
            elif op == p.OP_RESET:
                if in_episode:
                    self._reply(conn, p.ERR_RESET, msg="reset() called before the episode was done")
                    continue
                if needs_reset:
                    try:
                        obs, _ = env.reset()
                    except Exception as exc:  # the emulator failed: report, end the session
                        self._reply(conn, p.ERR_ENV, msg=f"emulator error: {exc}")
                        return self._outcome(EndReason.ENV_ERROR, f"the emulator failed: {exc}")
                    obs_buf[...] = obs
                    needs_reset = False
                self._reply(conn, p.OK)
            elif op == p.OP_CLOSE:
                self._reply(conn, p.OK)
                return self._outcome(EndReason.AGENT_CLOSED)
            else:
                self._reply(conn, p.ERR_BAD_REQUEST, msg=f"unknown request type {op}")
                return self._outcome(
                    EndReason.BAD_REQUEST, f"the agent sent a malformed request (type byte {op}); session ended"
                )

    def close(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass
        try:
            self._obs_map.close()
            os.close(self._obs_fd)
        except (OSError, ValueError, BufferError):
            pass
