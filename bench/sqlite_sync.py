"""What SQLite's synchronous=FULL costs the contest server, against NORMAL (both in WAL mode).

The server commits small transactions: a heartbeat, a level's progress, a finished level, a session.
This times N such commits (an UPDATE of one job row, as a heartbeat does) on a file in --dir, each
setting, the same run; FULL syncs the WAL at every commit, NORMAL only at checkpoints.

    python bench/sqlite_sync.py [--commits 500] [--dir /path/on/the/data/disk]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time


def run(path: str, synchronous: str, commits: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, heartbeat_at REAL)")
    conn.execute("INSERT OR IGNORE INTO jobs (id, heartbeat_at) VALUES (1, 0)")
    times = []
    for _ in range(commits):
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = 1", (time.time(),))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--dir", default=None, help="a directory on the disk the data directory is on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"{args.commits} one-row commits in {tmp} (load average {os.getloadavg()[0]:.1f})")
        for setting in ("NORMAL", "FULL"):
            times = sorted(run(os.path.join(tmp, f"{setting}.db"), setting, args.commits))
            p99 = times[int(len(times) * 0.99) - 1]
            print(
                f"synchronous={setting:6}  median {statistics.median(times) * 1000:7.3f} ms  "
                f"p99 {p99 * 1000:7.3f} ms  {len(times) / sum(times):8.0f} commits/s"
            )


if __name__ == "__main__":
    main()
