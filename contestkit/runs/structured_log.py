"""A level-run's results as structured lines on the env container's stdout, for runs with no network.

On Kubernetes a level-run pod has no network at all (a NetworkPolicy denies everything, and a policy
applies to the whole pod, the env container included), and no directory of the server is mounted into
it. What the server can still read is the pod's log, through the API server. So the env container runs
the env program under :func:`main`, which mirrors the results directory onto stdout:

* while the level runs, a ``progress`` record whenever ``progress.json`` changes (at most every
  :data:`PROGRESS_INTERVAL` seconds: the server shows timesteps, episodes and ETA from it);
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
import hashlib
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
PROGRESS_INTERVAL = 30.0  # seconds between progress records at most: 1,440 lines (~0.4 MB) in 12 hours
# Raw bytes of results files sent at most (base64 makes it 4/3): with the progress lines and the env's
# own output this keeps the env container's log under the kubelet's default 10 MiB rotation size, so
# the current log file always holds every record. The files that score (monitor.csv, log.csv,
# remote-status.json, progress.json) are ~100 B per episode: a million steps in 4,500-step episodes
# is ~25 KB, and even 1-step episodes ~40 MB would not fit; recordings (bk2/) are what grows. A file
# past the budget is listed as omitted in the end record, recordings last, so scoring never loses one.
RESULTS_BUDGET = 6 * 1024 * 1024
KUBELET_LOG_LIMIT = 10 * 1024 * 1024  # containerLogMaxSize's default
PROGRESS_FILE = "progress.json"  # contestkit.runs.results.PROGRESS; not imported: this module runs before anything


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


class IntegrityError(ValueError):
    """A file came back incomplete or different from what the pod sent (a gap, a size or hash mismatch)."""


def _order(path: Path, root: Path) -> tuple[int, str]:
    """What is sent first: everything scoring needs, then the rest, recordings last (they may be omitted)."""
    name = path.relative_to(root).as_posix()
    return (1 if "/" in name or name.endswith(".bk2") else 0, name)


def file_records(root: Path, budget: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, entry)`` for every chunk of every file under ``root``, the small result files first.

    Each chunk carries its number, the file's chunk count, size and SHA-256, so the reader can tell a
    gap or a truncated file from a complete one. ``budget``: raw bytes to send at most; a file that
    would pass it is not sent and its entry says ``omitted`` (only recordings can: the results that
    score are a few hundred KB, see :data:`RESULTS_BUDGET`).
    """
    sent = 0
    for path in sorted((p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")),
                       key=lambda p: _order(p, root)):  # fmt: skip
        name = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
        except OSError:
            continue
        entry = {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if budget is not None and sent + len(data) > budget:
            yield "", {**entry, "omitted": True}
            continue
        sent += len(data)
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        for index, chunk in enumerate(chunks):
            line = emit(
                RecordKind.FILE,
                {**entry, "index": index, "count": len(chunks), "last": index == len(chunks) - 1,
                 "b64": base64.b64encode(chunk).decode()},
            )  # fmt: skip
            yield line, entry


class FileAssembler:
    """Rebuilds files from ``file`` records, verified, refusing any path that would leave the results directory.

    Chunks may come twice (a stream read again from where it broke): the same chunk again is ignored.
    A file is written only once all its chunks are in and its size and SHA-256 match; :meth:`finish`
    checks the ``end`` record's list, so a file cut short is an :class:`IntegrityError`, never a result.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self._parts: dict[str, dict[int, bytes]] = {}
        self._meta: dict[str, tuple[int, int, str]] = {}  # path -> (chunk count, size, sha256)
        self.written: dict[str, str] = {}  # path -> sha256

    def _target(self, name: str) -> Path | None:
        target = (self.root / name).resolve()
        if not name or target == self.root.resolve() or self.root.resolve() not in target.parents:
            return None
        return target

    def add(self, data: dict[str, Any]) -> Path | None:
        """Take one chunk; returns the file's path once it is complete and verified."""
        name = str(data.get("path", ""))
        target = self._target(name)
        if target is None:
            return None
        try:
            index, count, size = int(data["index"]), int(data["count"]), int(data["size"])
            digest = str(data["sha256"])
            chunk = base64.b64decode(str(data["b64"]), validate=True)
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(f"A record of {name} lacks its chunk number, size or SHA-256.") from None
        if name in self.written:
            if self.written[name] != digest:
                raise IntegrityError(f"{name} was sent twice with different contents.")
            return None  # read again after a broken stream: already complete
        incomplete = [other for other in self._parts if other != name]
        if incomplete:
            raise IntegrityError(f"{incomplete[0]} ended before its last chunk (a gap in the log).")
        meta = self._meta.setdefault(name, (count, size, digest))
        if meta != (count, size, digest) or not 0 <= index < count:
            raise IntegrityError(f"{name}: chunk {index} does not belong to the file the earlier chunks described.")
        parts = self._parts.setdefault(name, {})
        if index < len(parts):
            return None  # the same chunk again (a stream read again from an earlier line)
        if index > len(parts):
            if not parts:
                del self._parts[name], self._meta[name]
            raise IntegrityError(f"{name}: chunk {index} came before chunk {len(parts)} (a gap in the log).")
        parts[index] = chunk
        if len(parts) < count:
            return None
        whole = b"".join(parts[i] for i in range(count))
        if len(whole) != size or hashlib.sha256(whole).hexdigest() != digest:
            raise IntegrityError(f"{name} came back with {len(whole)} bytes not matching its size {size} or SHA-256.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(whole)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        del self._parts[name], self._meta[name]
        self.written[name] = digest
        return target

    def missing(self, end: dict[str, Any]) -> list[str]:
        """What the ``end`` record lists and this assembler has not rebuilt (empty when nothing)."""
        problems = [f"{name} (a gap in the log)" for name in self._parts]
        for entry in end.get("files") or []:
            name = str(entry.get("path", "")) if isinstance(entry, dict) else str(entry)
            if isinstance(entry, dict) and entry.get("omitted"):
                if not name.startswith("bk2/") and not name.endswith(".bk2"):
                    problems.append(f"{name} (too large for the log: {entry.get('size')} bytes)")
                continue
            if name not in self.written and name not in self._parts:
                problems.append(f"{name} (never came)")
        return problems

    def finish(self, end: dict[str, Any] | None) -> None:
        """Raise :class:`IntegrityError` unless the end record came and every file it lists is complete."""
        if end is None:
            raise IntegrityError("The env container's log ended without its end record; its results are incomplete.")
        missing = self.missing(end)
        if missing:
            raise IntegrityError(f"Results came back incomplete: {', '.join(missing[:5])}.")


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
        entries: dict[str, dict[str, Any]] = {}
        for line, entry in file_records(self.results_dir, RESULTS_BUDGET):
            if line:
                self._write(line)
            entries[entry["path"]] = entry
        self._write(emit(RecordKind.END, {"files": list(entries.values())}))


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
    """``python -m contestkit.runs.structured_log ENV-PROGRAM-ARGS``: the env program, mirrored onto stdout.

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
