"""What the server's core process (scheduler, registry supervisor) tells its API worker processes.

Why: under ``server run --workers N`` the executor and the team registry's supervisor live in the
parent process, while ``/rest/health``, ``/metrics`` and the host's pages are answered by the
workers. Every ``PUBLISH_SECONDS`` the core writes a small JSON file in the data directory (whether
the engine answers, the executor's notices such as a Kubernetes NetworkPolicy hold, the registry
process's pid and restarts), replaced atomically; a worker reads it at most once a second and
serves it through the same interfaces the single process uses (``PublishedExecutor`` is an
``Executor`` that runs nothing; ``PublishedSupervisor`` has the supervisor's ``pid``, ``restarts``
and ``last_exit``).

A status older than ``STALE_SECONDS`` means the core process stopped publishing (hung or gone):
the workers then report the engine unreachable, so the health check shows it instead of answering
"ok" while no job can run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from contestkit.server.deployment.registry_supervision import RegistryProbe, RegistrySupervisor
from contestkit.server.executors import Executor, LevelRun, LevelTask

FILE_NAME = "core-status.json"
PUBLISH_SECONDS = 2.0
STALE_SECONDS = 15.0


def snapshot(executor: Executor, registry: RegistryProbe, supervisor: RegistrySupervisor | None) -> dict[str, Any]:
    """The document the core publishes, read from the live executor, registry probe and supervisor."""
    ok, detail = executor.reachable()
    registry_ok, registry_detail = registry.check()
    supervised = {} if supervisor is None else {
        "pid": supervisor.pid, "restarts": supervisor.restarts, "last_exit": supervisor.last_exit
    }  # fmt: skip
    return {
        "written_at": time.time(),
        "executor": {"name": executor.name, "ok": ok, "detail": detail, "notices": executor.notices()},
        "registry": {"ok": registry_ok, "detail": registry_detail, "supervised": supervisor is not None, **supervised},
    }


def write(data_dir: Path, document: dict[str, Any]) -> None:
    """Replace the status file atomically (a reader sees the old document or the new, never half)."""
    path = Path(data_dir) / FILE_NAME
    temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    temporary.write_text(json.dumps(document) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class Publisher:
    """The core's side: writes the status now and then every ``PUBLISH_SECONDS`` until ``stop``."""

    def __init__(
        self, data_dir: Path, executor: Executor, registry: RegistryProbe, supervisor: RegistrySupervisor | None
    ) -> None:
        self.data_dir, self.executor, self.registry, self.supervisor = Path(data_dir), executor, registry, supervisor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contestkit-core-status", daemon=True)

    def start(self) -> Publisher:
        write(self.data_dir, snapshot(self.executor, self.registry, self.supervisor))  # there before any worker starts
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_SECONDS):
            try:
                write(self.data_dir, snapshot(self.executor, self.registry, self.supervisor))
            except OSError:  # a full disk: the workers see the status age and say so
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class CoreStatus:
    """A worker's view of the file, read again whenever it was replaced (one ``stat`` per look).

    Why not a per-worker cache with an age, as the single process's probes have: two requests
    answered by two workers would then disagree for that long (the health check saying the
    registry is back while ``/metrics`` says it is down). Every worker reads the same document."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE_NAME
        self._seen: tuple[int, int] | None = None
        self._document: dict[str, Any] = {}
        self._lock = threading.Lock()

    def document(self) -> dict[str, Any]:
        try:
            stat = os.stat(self.path)
            version: tuple[int, int] | None = (stat.st_ino, stat.st_mtime_ns)
        except OSError:
            version = None
        with self._lock:
            if version != self._seen or version is None:
                self._seen = version
                try:
                    loaded = json.loads(self.path.read_text(encoding="utf-8"))
                    self._document = loaded if isinstance(loaded, dict) else {}
                except (OSError, ValueError):
                    self._document = {}
            return self._document

    def age(self) -> float | None:
        """Seconds since the core last published, or None if it never did."""
        written = self.document().get("written_at")
        return time.time() - written if isinstance(written, (int, float)) else None

    def section(self, name: str) -> dict[str, Any]:
        found = self.document().get(name)
        return found if isinstance(found, dict) else {}


class PublishedExecutor(Executor):
    """The executor as the core process last described it; it runs nothing itself."""

    def __init__(self, status: CoreStatus) -> None:
        self.status = status
        self.name = str(status.section("executor").get("name") or "executor")

    def reachable(self) -> tuple[bool, str]:
        silence = _silence(self.status.age())
        if silence is not None:
            return False, f"{silence}; level-runs may not be starting"
        section = self.status.section("executor")
        return bool(section.get("ok")), str(section.get("detail") or "")

    def notices(self) -> list[str]:
        return [str(notice) for notice in self.status.section("executor").get("notices") or []]

    def start(self, task: LevelTask) -> LevelRun:
        raise RuntimeError("an API worker process runs no level-run; the scheduler's process does")


def _silence(age: float | None) -> str | None:
    """Why the core's status cannot be believed (never written, or too old), or None."""
    if age is not None and age <= STALE_SECONDS:
        return None
    since = "never reported" if age is None else f"not reported for {age:.0f} s"
    return f"the server's scheduler process has {since}"


class PublishedRegistryProbe:
    """The core's last probe of the team registry (``RegistryWatch`` asks it as it asks ``RegistryProbe``)."""

    def __init__(self, status: CoreStatus) -> None:
        self.status = status

    def check(self) -> tuple[bool, str]:
        silence = _silence(self.status.age())
        if silence is not None:
            return False, silence
        section = self.status.section("registry")
        return bool(section.get("ok")), str(section.get("detail") or "")


class PublishedSupervisor:
    """The registry supervisor of the core process, as it last published it (``RegistryWatch`` reads it)."""

    def __init__(self, status: CoreStatus) -> None:
        self.status = status

    def _get(self, key: str) -> int | None:
        value = self.status.section("registry").get(key)
        return value if isinstance(value, int) else None

    @property
    def pid(self) -> int | None:
        return self._get("pid")

    @property
    def restarts(self) -> int:
        return self._get("restarts") or 0

    @property
    def last_exit(self) -> int | None:
        return self._get("last_exit")
