"""An agent's stdout or stderr kept once, and bounded: the head and the tail, the middle elided.

Why head and tail: the head says how the agent started (its settings, the first errors), the tail
how it ended (the traceback that ``summary.json`` quotes); a level-run that prints 1 GB keeps
``limit`` bytes and says how much it left out, where before every byte was stored twice (the
results file plus the Docker engine's own log, which is now bounded by ``log-opts max-size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


def elision_marker(elided: int) -> bytes:
    """The line that stands where the middle of the output was left out."""
    return f"\n[contestkit: {elided} bytes of output elided here; the first and last parts are kept]\n".encode()


class HeadTailWriter:
    """Appends to ``path``: the first ``limit // 2`` bytes as they come, then only the last
    ``limit - limit // 2`` bytes, written with the elision marker on ``close``. Memory: the tail."""

    def __init__(self, path: Path, limit: int) -> None:
        self.head_left = limit // 2
        self.tail_size = limit - limit // 2
        self.tail = bytearray()
        self.elided = 0
        self.file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed in close()

    def write(self, chunk: bytes) -> None:
        if self.head_left > 0:
            head, chunk = chunk[: self.head_left], chunk[self.head_left :]
            self.file.write(head)
            self.file.flush()
            self.head_left -= len(head)
        if not chunk:
            return
        self.tail += chunk
        if len(self.tail) > self.tail_size:
            dropped = len(self.tail) - self.tail_size
            del self.tail[:dropped]
            self.elided += dropped

    def close(self) -> None:
        try:
            if self.elided:
                self.file.write(elision_marker(self.elided))
            self.file.write(bytes(self.tail))
        finally:
            self.file.close()
