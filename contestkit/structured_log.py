"""A level-run's results as structured lines on the env container's stdout, for runs with no network.

On Kubernetes a level-run pod has no network at all (a NetworkPolicy denies everything, and a policy
applies to the whole pod, the env container included), and no directory of the server is mounted into
it. What the server can still read is the pod's log, through the API server. So the env container runs
the env program under :func:`main`, which mirrors the results directory onto stdout:

* while the level runs, a ``progress`` record whenever ``progress.json`` changes (at most every few
  seconds: the server shows timesteps, episodes and ETA from it);
* when the env program has ended, one ``file`` record per chunk of every file it wrote
  (``monitor.csv``, ``log.csv``, ``progress.json``, ``remote-status.json``, recordings), then one
  ``end`` record naming them, so a reader knows the set is complete.

The server's reader (:func:`parse`) rebuilds the files byte for byte; the summary, the score and the
reward curve are then computed from them by the same code as for every other runtime. Why the log and
not a termination message: a termination message holds 4 KiB, less than one monitor.csv; why not a
shared volume: the server would need a ReadWriteMany volume mounted into every level-run pod, which
the team's agent container could then reach too.

Lines are kept under 16 KiB (the container runtime splits longer ones), and a record is written with
one ``os.write`` so it never interleaves with what the env program prints meanwhile.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

PREFIX = "@@contestkit-record@@ "
CHUNK_BYTES = 8192  # raw bytes per file record: about 11 KB of base64, under the runtime's 16 KiB lines
PROGRESS_INTERVAL = 5.0  # seconds between progress records: 8,640 lines in 12 hours, well under log rotation
PROGRESS_FILE = "progress.json"  # contestkit.results.PROGRESS; not imported: this module runs before anything


class RecordKind(str, Enum):
    """What a structured line carries."""

    PROGRESS = "progress"  # the content of progress.json
    FILE = "file"  # one chunk of one results file
    END = "end"  # every file has been sent


@dataclass(frozen=True)
class Record:
    kind: RecordKind
    data: dict[str, Any]


def emit(kind: RecordKind, data: dict[str, Any]) -> str:
    """One structured line (with its newline) for ``data``."""
    return PREFIX + json.dumps({"kind": kind.value, **data}, separators=(",", ":"), default=str) + "\n"


def parse(line: str) -> Record | None:
    """The record a line carries, or None for any other output (which stays the container's log)."""
    if not line.startswith(PREFIX):
        return None
    try:
        document = json.loads(line[len(PREFIX) :])
        kind = RecordKind(document.pop("kind"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return Record(kind, document)


def file_records(root: Path) -> Iterator[str]:
    """``file`` records for every file under ``root`` (sorted, so the order is the same every time)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        name = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
        except OSError:
            continue
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        for index, chunk in enumerate(chunks):
            yield emit(
                RecordKind.FILE,
                {
                    "path": name,
                    "index": index,
                    "last": index == len(chunks) - 1,
                    "b64": base64.b64encode(chunk).decode(),
                },
            )


class FileAssembler:
    """Rebuilds files from ``file`` records, refusing any path that would leave the results directory."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self._parts: dict[str, list[bytes]] = {}
        self.written: list[str] = []

    def add(self, data: dict[str, Any]) -> Path | None:
        """Take one chunk; returns the file's path once its last chunk has arrived."""
        name = str(data.get("path", ""))
        target = (self.root / name).resolve()
        if not name or target == self.root.resolve() or self.root.resolve() not in target.parents:
            return None
        parts = self._parts.setdefault(name, [])
        if int(data.get("index", 0)) == 0:
            parts.clear()
        parts.append(base64.b64decode(str(data.get("b64", ""))))
        if not data.get("last"):
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(b"".join(self._parts.pop(name)))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        self.written.append(name)
        return target


class Mirror:
    """Copies a results directory onto a file descriptor as records (the env container's side)."""

    def __init__(
        self, results_dir: Path, *, write: Callable[[str], None] | None = None, interval: float = PROGRESS_INTERVAL
    ) -> None:
        self.results_dir = results_dir
        self.interval = interval
        self._write = write or _write_stdout
        self._stop = threading.Event()
        self._last_progress: bytes | None = None
        self._thread = threading.Thread(target=self._loop, name="contestkit-mirror", daemon=True)

    def start(self) -> Mirror:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._progress()

    def _progress(self) -> None:
        try:
            raw = (self.results_dir / PROGRESS_FILE).read_bytes()
            document = json.loads(raw)
        except (OSError, ValueError):
            return  # not written yet, or caught mid-replace: the next tick sees it
        if raw != self._last_progress and isinstance(document, dict):
            self._last_progress = raw
            self._write(emit(RecordKind.PROGRESS, document))

    def finish(self) -> None:
        """The env program has ended: the last progress, every file, then ``end``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 1)
        self._progress()
        names = []
        for line in file_records(self.results_dir):
            self._write(line)
            record = parse(line)
            if record is not None and record.data.get("last"):
                names.append(record.data["path"])
        self._write(emit(RecordKind.END, {"files": names}))


def _write_stdout(line: str) -> None:
    sys.stdout.flush()  # what the env program printed before comes first
    data = line.encode()
    while data:
        written = os.write(1, data)
        data = data[written:]


@contextmanager
def mirrored(results_dir: Path, *, interval: float = PROGRESS_INTERVAL) -> Iterator[Mirror]:
    """Mirror ``results_dir`` onto stdout for the ``with`` block; the files follow at its end, whatever ended it."""
    mirror = Mirror(results_dir, interval=interval).start()
    try:
        yield mirror
    finally:
        mirror.finish()


def _env_program_main() -> Callable[[list[str]], int]:
    """The env program's ``main``, the one every runtime starts."""
    import importlib

    from contestkit.runtime.base import ENV_PROGRAM

    return importlib.import_module(ENV_PROGRAM).main  # type: ignore[no-any-return]


def _results_dir(argv: list[str]) -> Path | None:
    for index, arg in enumerate(argv):
        if arg == "--results-dir" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--results-dir="):
            return Path(arg.split("=", 1)[1])
    return None


def main(argv: list[str] | None = None) -> int:
    """``python -m contestkit.structured_log ENV-PROGRAM-ARGS``: the env program, mirrored onto stdout.

    The arguments are the env program's own; its exit status is this process's.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    results_dir = _results_dir(argv)
    env_main = _env_program_main()
    if results_dir is None:
        return env_main(argv)  # the env program reports the missing option itself
    results_dir.mkdir(parents=True, exist_ok=True)
    with mirrored(results_dir):
        return env_main(argv)


if __name__ == "__main__":
    sys.exit(main())
