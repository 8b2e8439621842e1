"""The results directory of an evaluated level, as described in the product's cli.md.

Both runtimes and the contest server read and write results only through this module, so the
layout (and the refusal to overwrite earlier results) is the same everywhere.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from contestkit.errors import UsageError

MONITOR = "monitor.csv"
LOG = "log.csv"
SUMMARY = "summary.json"
PROGRESS = "progress.json"
ENV_STATUS = "remote-status.json"
AGENT_STDOUT = "agent-stdout.txt"
AGENT_STDERR = "agent-stderr.txt"
REMOTE_STDOUT = "remote-stdout.txt"
REMOTE_STDERR = "remote-stderr.txt"
RECORDINGS = "bk2"
AGENT_OUT = "out"

_RESULT_FILES = (MONITOR, LOG, SUMMARY, PROGRESS, ENV_STATUS, AGENT_STDOUT, AGENT_STDERR, REMOTE_STDOUT, REMOTE_STDERR)


def holds_results(path: Path) -> bool:
    """Whether a directory already holds an evaluation's results (at any depth of one level)."""
    if not path.is_dir():
        return False
    if any((path / name).exists() for name in (MONITOR, SUMMARY)):
        return True
    return any((child / SUMMARY).exists() for child in path.iterdir() if child.is_dir())


def prepare(path: Path, *, force: bool) -> Path:
    """Make ``path`` ready for new results, refusing to overwrite old ones unless forced."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--results-dir {path} is a file; choose a directory.")
    if holds_results(path):
        if not force:
            raise UsageError(
                f"{path} already holds results; pass --force to replace them or choose another --results-dir."
            )
        for name in _RESULT_FILES:
            (path / name).unlink(missing_ok=True)
        shutil.rmtree(path / RECORDINGS, ignore_errors=True)
        for child in path.iterdir():
            if child.is_dir() and (child / SUMMARY).exists():
                shutil.rmtree(child)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_results_dir(base: Path | None = None) -> Path:
    """A fresh directory under ./results named by the time, so that runs never collide."""
    import datetime as _dt

    base = base or Path("results")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = base / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{stamp}-{n}"
    return candidate


def write_json(path: Path, document: Any) -> None:
    """Write atomically: a reader (the live progress view, a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(document, f, indent=2, default=str)
        f.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are for the user, whoever wrote them
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_monitor(path: Path) -> list[tuple[float, int, float]]:
    """Finished episodes (r, l, t) from a monitor.csv; a torn last line is ignored."""
    episodes: list[tuple[float, int, float]] = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(line for line in f if not line.startswith("#")):
                try:
                    episodes.append((float(row["r"]), int(row["l"]), float(row["t"])))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        pass
    return episodes


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
