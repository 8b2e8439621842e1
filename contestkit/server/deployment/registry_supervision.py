"""The team registry as part of the contest: probed for health, and run by ``contestkit server run``.

Why the server runs it: a contest needs both processes, and a registry that stopped (crashed, never
started) left teams unable to push while ``/rest/health`` said ``ok`` and ``/host`` showed nothing
wrong. ``server run`` now starts Debian's ``docker-registry`` with the configuration ``server init``
wrote, restarts it with exponential backoff when it exits, and stops it on exit; ``--no-registry``
leaves it to hosts who run their own (systemd, compose, another machine). Either way the server
probes the registry's ``/v2/`` for ``/rest/health``, ``/metrics`` and ``/host``.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from prometheus_client.core import GaugeMetricFamily

from contestkit.errors import ContestkitError
from contestkit.server.config import ServerConfig

log = logging.getLogger("contestkit.server.registry")

REGISTRY_BINARY = "docker-registry"  # Debian's package of the CNCF distribution registry
PROBE_TIMEOUT = 3.0  # seconds one /v2/ probe may take
PROBE_CACHE = 5.0  # seconds a probe's answer is reused (health checks and scrapes come often)
BACKOFF_FIRST = 1.0  # seconds before the first restart
BACKOFF_MAX = 60.0  # the longest wait between restarts
STABLE_AFTER = 60.0  # a registry that ran this long had a clean start: the backoff starts over
STOP_GRACE = 10.0  # seconds the registry gets to stop before it is killed


@dataclass(frozen=True)
class RegistryHealth:
    ok: bool
    detail: str
    supervised: bool
    restarts: int = 0
    pid: int | None = None

    def document(self) -> dict[str, Any]:
        document = {"ok": self.ok, "detail": self.detail, "supervised": self.supervised, "restarts": self.restarts}
        if self.pid is not None:
            document["pid"] = self.pid
        return document


class RegistryProbe:
    """Asks the registry's ``/v2/`` whether it answers (200, or 401 with token auth: both mean up)."""

    def __init__(self, config: ServerConfig, cache_seconds: float = PROBE_CACHE) -> None:
        self.cache_seconds = cache_seconds
        self.url = f"{config.registry_scheme}://{config.registry}/v2/"
        ca = config.data_file(config.tls_cert) if config.tls_cert else None
        self.verify: bool | str = str(ca) if ca else True
        self._lock = threading.Lock()
        self._cached: tuple[float, bool, str] | None = None

    def check(self) -> tuple[bool, str]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1], self._cached[2]
        try:
            answer = requests.get(self.url, timeout=PROBE_TIMEOUT, verify=self.verify)
            ok = answer.status_code in (200, 401)
            detail = f"{self.url} answers" if ok else f"{self.url} answered HTTP {answer.status_code}"
        except requests.RequestException as exc:
            ok, detail = False, f"{self.url} does not answer ({type(exc).__name__})"
        with self._lock:
            self._cached = (time.monotonic(), ok, detail)
        return ok, detail


class RegistrySupervisor:
    """Runs ``docker-registry serve CONFIG`` and restarts it with backoff until ``stop()``."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        command: list[str] | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        config_file = config.registry_dir / "config.yml"
        if command is None:
            binary = shutil.which(REGISTRY_BINARY)
            if binary is None:
                raise ContestkitError(
                    f"`server run` starts the team registry, but {REGISTRY_BINARY} is not installed; install it "
                    "(apt-get install docker-registry) or run your own registry and pass --no-registry."
                )
            if not config_file.is_file():
                raise ContestkitError(
                    f"The registry configuration {config_file} is missing; run `contestkit server init --force` "
                    "to write it again, or pass --no-registry if you run your own registry."
                )
            command = [binary, "serve", str(config_file)]
        self.command = command
        self.log_path: Path = config.registry_dir / "registry.log"
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.restarts = 0
        self.last_exit: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- running --

    def start(self) -> None:
        self._launch()
        self._thread = threading.Thread(target=self._watch, name="registry-supervisor", daemon=True)
        self._thread.start()

    def _launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as output, self._lock:
            self._process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
                self.command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        log.info("registry started (pid %s): %s; its log: %s", self._process.pid, " ".join(self.command), self.log_path)

    def _watch(self) -> None:
        delay = self.backoff_first
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            self.last_exit = code
            if time.monotonic() - started >= STABLE_AFTER:
                delay = self.backoff_first
            log.warning(
                "the registry exited with status %s; restarting it in %.0f s (see %s)", code, delay, self.log_path
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.backoff_max)
            self.restarts += 1
            self._launch()

    def stop(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after ``STOP_GRACE``) and the watching thread."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(STOP_GRACE)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._process.pid if self._process is not None and self._process.poll() is None else None


def supervisor_for(config: ServerConfig, logger: logging.Logger) -> RegistrySupervisor | None:
    """The supervisor ``server run`` starts, or None when a registry already answers at the configured
    address (a host who started one by hand, as older guides said): a second one could not listen there."""
    ok, detail = RegistryProbe(config, cache_seconds=0).check()
    if ok:
        logger.warning(
            "A registry already answers at %s (%s); this server does not start another. Pass --no-registry to "
            "say you run your own.", config.registry, detail,
        )  # fmt: skip
        return None
    return RegistrySupervisor(config)


class RegistryWatch:
    """What the server says about the registry: the probe, plus the supervisor when it runs one."""

    def __init__(
        self,
        config: ServerConfig,
        supervisor: RegistrySupervisor | None = None,
        cache_seconds: float = PROBE_CACHE,
        probe: Any = None,
    ) -> None:
        """``probe``: what answers ``check()`` instead of probing from this process (an API worker of
        ``server run --workers N`` reads the core process's probe, so every worker says the same)."""
        self.probe = probe or RegistryProbe(config, cache_seconds)
        self.supervisor = supervisor

    def health(self) -> RegistryHealth:
        ok, detail = self.probe.check()
        if self.supervisor is None:
            return RegistryHealth(ok, detail, supervised=False)
        pid = self.supervisor.pid
        if pid is None:
            status = self.supervisor.last_exit
            ok, detail = False, f"the registry is not running (last exit status {status}); restarting it"
        return RegistryHealth(ok, detail, supervised=True, restarts=self.supervisor.restarts, pid=pid)


class RegistryCollector:
    """``/metrics``: ``contestkit_registry_up`` and ``contestkit_registry_restarts``."""

    def __init__(self, watch: RegistryWatch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health = self.watch.health()
        yield GaugeMetricFamily(
            "contestkit_registry_up", "1 when the team registry answers /v2/.", value=int(health.ok)
        )
        yield GaugeMetricFamily(
            "contestkit_registry_restarts", "Times `server run` restarted the registry.", value=health.restarts
        )
