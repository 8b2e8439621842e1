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

REWARD_CURVE = "reward-curve.svg"
BEST_VIDEO = "best-episode.mp4"  # eval --record: the best episode rendered (contestkit.runs.replay)
BEST_POSTER = "best-episode.png"
LAST_VIDEO = "last-episode.mp4"  # the contest server with record: true renders the last one too
LAST_POSTER = "last-episode.png"

_RESULT_FILES = (
    MONITOR, LOG, SUMMARY, PROGRESS, ENV_STATUS, AGENT_STDOUT, AGENT_STDERR, REMOTE_STDOUT, REMOTE_STDERR, REWARD_CURVE,
    BEST_VIDEO, BEST_POSTER, LAST_VIDEO, LAST_POSTER,
)  # fmt: skip
_RESULT_DIRS = (RECORDINGS, AGENT_OUT)


def holds_results(path: Path) -> bool:
    """Whether a directory already holds an evaluation's results (at any depth of one level)."""
    if not path.is_dir():
        return False
    if any((path / name).exists() for name in (MONITOR, SUMMARY)):
        return True
    return any((child / SUMMARY).exists() for child in path.iterdir() if child.is_dir())


def contest_level_dirs(path: Path) -> set[str]:
    """The level directories a contest summary at ``path`` lists (empty for a one-level run).

    These are the ones --force may replace, and the ones the CLI draws curves for.
    """
    document = read_json(path / SUMMARY) or {}
    levels = document.get("levels") if isinstance(document, dict) else None
    names = set()
    for level in levels if isinstance(levels, list) else []:
        name = level.get("results_dir") if isinstance(level, dict) else None
        if isinstance(name, str) and "/" not in name and name not in ("", ".", ".."):
            names.add(name)
    return names


def prepare(path: Path, *, force: bool) -> Path:
    """Make ``path`` ready for new results, refusing to overwrite old ones unless forced.

    ``force`` replaces only what an evaluation writes there (its files, ``bk2/``, ``out/`` and,
    for a contest run, the level directories its summary lists). Other runs inside (a parent
    such as ``results/``) are never deleted: that is refused with the names found.
    """
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--results-dir {path} is a file; choose a directory.")
    if holds_results(path):
        if not force:
            raise UsageError(
                f"{path} already holds results; pass --force to replace them or choose another --results-dir."
            )
        own = contest_level_dirs(path)
        others = sorted(
            child.name
            for child in path.iterdir()
            if child.is_dir() and child.name not in own and child.name not in _RESULT_DIRS and holds_results(child)
        )
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise UsageError(
                f"{path} holds other runs ({shown}), which --force does not delete; choose a fresh --results-dir."
            )
        for name in _RESULT_FILES:
            (path / name).unlink(missing_ok=True)
        for name in (*_RESULT_DIRS, *own):
            target = path / name
            if target.is_symlink():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--results-dir {path} cannot be created ({exc.strerror}); choose another.") from None
    return path


def discard_setup(path: Path) -> None:
    """Remove what starting an evaluation wrote before it failed to start (empty logs, ``out/``)."""
    for name in _RESULT_FILES:
        (path / name).unlink(missing_ok=True)
    for name in _RESULT_DIRS:
        try:
            (path / name).rmdir()  # only when empty: nothing of anyone's is lost
        except OSError:
            pass


def default_results_dir(base: Path | None = None) -> Path:
    """A fresh directory under ./results named by the time, created here so that runs never collide.

    Two evaluations started in the same second each get their own directory: the name is taken
    by creating it (``mkdir`` fails for the second one, which moves on to ``-2``).
    """
    import datetime as _dt

    base = base or Path("results")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        candidate = base / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1
        except OSError as exc:
            raise UsageError(
                f"Cannot create a results directory under {base} ({exc.strerror}); pass --results-dir."
            ) from None


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


def disk_usage(path: Path, stop_above: int | None = None) -> int:
    """Bytes of disk the files under ``path`` take (allocated blocks, so a sparse file counts for what
    it really holds), without following links; stops counting once over ``stop_above``."""
    total = 0
    pending = [path]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            if stop_above is not None and total > stop_above:
                return total
    return total
