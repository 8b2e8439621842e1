"""A mark every process of one server moves when it commits a write the leaderboard depends on.

Why: the leaderboard cache (``contest/boardcache``) answers from memory until something it depends
on may have changed. Inside one process a counter bumped on commit says so at once. With
``server run --workers N`` the jobs finish in the scheduler's process and the leaderboard is
answered by the API workers, so a per-process counter would leave every worker a recheck interval
(2 s) behind each finish. This is the counter shared: 8 bytes of a file in the data directory,
mapped by every process of the server, into which each such commit writes ``time.time_ns()``.

No lock: a reader only compares the value with the one it saw when it last checked the database;
any change (even a torn read) makes it check again, and the check itself (the fingerprint query)
is what decides. A commit writes the mark after the commit, so a reader that saw the old mark
either saw the new rows or will see a moved mark next time. Processes of another host (several
servers on one PostgreSQL) do not share the file: for them the cache's periodic recheck remains
the bound, as before.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

FILE_NAME = "writes.mark"
_FORMAT = struct.Struct("<q")


class WriteMark:
    """The shared mark of one data directory (``FILE_NAME``), mapped for reading and writing."""

    def __init__(self, data_dir: Path) -> None:
        path = Path(data_dir) / FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _FORMAT.size:
                os.ftruncate(fd, _FORMAT.size)
            self._map = mmap.mmap(fd, _FORMAT.size)
        finally:
            os.close(fd)  # the mapping keeps the file

    def read(self) -> int:
        """The last value any process wrote (0 before the first write)."""
        return int(_FORMAT.unpack_from(self._map, 0)[0])

    def move(self) -> None:
        """Say that a write was committed now."""
        _FORMAT.pack_into(self._map, 0, time.time_ns())

    def close(self) -> None:
        self._map.close()
