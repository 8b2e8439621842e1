"""A 2018-style bridge, for comparison: JSON messages over a unix socket, observations in a
memory-mapped file. This is a re-implementation of that design for measurement, not the 2018
code: each step the agent sends ``{"op": "step", "action": [...]}`` and the env answers
``{"reward": r, "done": d, "info": {...}}`` after writing the screen into the mapped file.

Used by ``bench/bridge.py --compare-json``.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import time
from pathlib import Path

import numpy as np

OBS_SHAPE = (224, 320, 3)


def _lines(sock: socket.socket):
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line


def serve(directory: str, game: str, state: str) -> None:
    """Env side (run in its own process)."""
    from contestkit.env.envs import ContestEnv
    from contestkit.env.games import resolve_level

    env = ContestEnv(resolve_level(game, state), seed=0)
    d = Path(directory)
    size = int(np.prod(OBS_SHAPE))
    with open(d / "obs", "wb") as f:
        f.truncate(size)
    fd = os.open(d / "obs", os.O_RDWR)
    obs_map = np.ndarray(OBS_SHAPE, np.uint8, buffer=mmap.mmap(fd, size))
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(d / "sock"))
    listener.listen(1)
    conn, _ = listener.accept()
    done = True
    for line in _lines(conn):
        msg = json.loads(line)
        if msg["op"] == "reset" or done:
            obs, _ = env.reset()
            done = False
            if msg["op"] == "reset":
                obs_map[...] = obs
                conn.sendall(b'{"ok": true}\n')
                continue
        obs, reward, term, trunc, _ = env.step(np.array(msg["action"], dtype=np.uint8))
        done = term or trunc
        obs_map[...] = obs
        # info stays empty, as in evaluation (the contest hid the game's variables at test time)
        conn.sendall(json.dumps({"reward": reward, "done": done, "info": {}}).encode() + b"\n")
    env.close()


class JsonRemoteEnv:
    """Agent side."""

    def __init__(self, directory: str, timeout: float = 30.0) -> None:
        d = Path(directory)
        deadline = time.time() + timeout
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(str(d / "sock"))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
        fd = os.open(d / "obs", os.O_RDONLY)
        self.obs = np.ndarray(
            OBS_SHAPE, np.uint8, buffer=mmap.mmap(fd, int(np.prod(OBS_SHAPE)), access=mmap.ACCESS_READ)
        )
        self.reader = _lines(self.sock)

    def reset(self) -> np.ndarray:
        self.sock.sendall(b'{"op": "reset"}\n')
        next(self.reader)
        return self.obs.copy()

    def step(self, action) -> tuple[np.ndarray, float, bool, dict]:
        self.sock.sendall(json.dumps({"op": "step", "action": [int(a) for a in action]}).encode() + b"\n")
        reply = json.loads(next(self.reader))
        return self.obs.copy(), reply["reward"], reply["done"], reply["info"]

    def close(self) -> None:
        self.sock.close()
