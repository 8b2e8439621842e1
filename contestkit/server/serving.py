"""Running a contest server: one process, or N API worker processes around one core (``server run``).

Why N processes: the API is Python, so one process uses about one core whatever the machine has
(an independent load test found 53-58% of 2 cores busy at 200 connections). With
``--workers N`` (default: one per CPU this process may use) uvicorn serves the API from N worker
processes sharing one listening socket, while the parent keeps the data directory's lock and runs
the core once (``core.Core``: the scheduler, the sweeper, the team registry). How what must be
shared stays correct across processes:

- jobs started or restarted in a worker ring the scheduler's doorbell (``queue/doorbell``); a
  cancel is the database's ``cancel_requested``, read by the scheduler's monitor;
- the leaderboard caches compare a write mark every process moves on commit (``storage/writemark``);
- finished jobs' documents are keyed by what the database says on every request (``api/jobdocs``);
- the login throttle counts in the database (``security/throttle``), so the limit is the server's,
  not each worker's;
- the hash pool (concurrent Argon2 checks) gets ``ceil(bound / N)`` per worker (``auth.HashPool``);
- ``/metrics`` adds up every process's counters through prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, a fresh ``metrics/`` directory in the data directory each start);
- ``/rest/health`` and the host's pages read the executor's and registry's state the core publishes
  (``core_status``).

This module imports no server module at its top: ``PROMETHEUS_MULTIPROC_DIR`` must be set before
prometheus_client is first imported in a process, which importing the app does.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from contestkit.errors import ContestkitError, UsageError
from contestkit.runs import cpuset

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("contestkit.server")

METRICS_DIR = "metrics"
_ENV_DATA_DIR = "CONTESTKIT_SERVER_DATA_DIR"
_ENV_WORKERS = "CONTESTKIT_SERVER_WORKERS"
_ENV_LOG_LEVEL = "CONTESTKIT_SERVER_LOG_LEVEL"
_ENV_PARENT = "CONTESTKIT_SERVER_PARENT"
_PROMETHEUS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MAX_WORKERS = 64  # each worker holds a database pool and a few hundred threads at most: a bound, not a goal


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs this process's cgroup may use in time (a container's or pod's CPU limit), or None.

    Why: a pod limited to 2 CPUs on a 64-core node sees all 64 in its affinity; a worker per core
    would then be 64 processes sharing 2 CPUs' time."""
    try:  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
        quota, _, period = (cgroup / "cpu.max").read_text().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def default_workers(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """One API worker per CPU this process may run on: its affinity (e.g. a container's cpuset), and at
    most its CPU limit rounded up."""
    cpus = len(cpuset.available())
    quota = cpu_quota(cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, min(cpus, MAX_WORKERS))


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be between 1 and {MAX_WORKERS} (got {workers}); the default is one per CPU.")
    return workers


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One server per data directory: a second would requeue the first one's running operations."""
    path = Path(data_dir) / "server.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ContestkitError(
                f"Another contest server is already running on {data_dir}; stop it first or use another --data-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _configure_logging(log_level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s"
    )


def _fresh_metrics_dir(data_dir: Path) -> Path:
    """An empty ``metrics/`` for this start (the last start's files would add its counts to this one's)."""
    path = data_dir / METRICS_DIR
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    return path


def serve(
    data_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    log_level: str = "info",
    run_registry: bool = True,
    workers: int = 1,
) -> None:
    """Run the API, the job queue and (``run_registry``) the team registry until interrupted
    (``contestkit server run``); the registry is stopped when the server stops. ``workers`` > 1
    serves the API from that many processes (see the module)."""
    check_workers(workers)
    data_dir = Path(data_dir).expanduser().absolute()
    if workers > 1:
        if "prometheus_client" in sys.modules and _PROMETHEUS_DIR not in os.environ:
            raise ContestkitError(
                "serve(workers=N) must be called before prometheus_client is imported (it counts for every worker "
                "only then); call it from a fresh process, as `contestkit server run --workers N` does."
            )
        if (data_dir / "server.yaml").is_file():  # else load_config below says what is missing
            os.environ[_PROMETHEUS_DIR] = str(_fresh_metrics_dir(data_dir))
    import uvicorn

    from contestkit.server.app import create_app
    from contestkit.server.config import DEFAULT_PORT, load_config
    from contestkit.server.core import Core, upgrade_data_dir
    from contestkit.server.deployment import registry_supervision
    from contestkit.server.executors.configured import load_executor
    from contestkit.server.storage.db import Database

    config = load_config(data_dir)
    port = DEFAULT_PORT if port is None else port
    _configure_logging(log_level)
    with data_dir_lock(config.data_dir):
        supervisor = registry_supervision.supervisor_for(config, log) if run_registry else None
        core: Core | None = None
        if workers == 1:
            app: object = create_app(config.data_dir, registry_supervisor=supervisor)  # the core runs inside
        else:
            database = Database(config.database())
            upgrade_data_dir(config, database)  # once, before any worker opens them
            core = Core(config, database, load_executor(config), registry_supervisor=supervisor)
            os.environ.update(
                {_ENV_DATA_DIR: str(config.data_dir), _ENV_WORKERS: str(workers), _ENV_LOG_LEVEL: log_level,
                 _ENV_PARENT: str(os.getpid())}
            )  # fmt: skip
            app = "contestkit.server.serving:worker_app"
        if supervisor is not None:
            supervisor.start()
        try:
            if core is not None:
                core.start(for_workers=True)
            cert, key = config.data_file(config.tls_cert), config.data_file(config.tls_key)
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)} if cert and key else {}
            # Forwarded headers only from the proxies server.yaml names (uvicorn trusts loopback by default).
            proxies = {"proxy_headers": bool(config.forwarded_allow_ips),
                       "forwarded_allow_ips": ",".join(config.forwarded_allow_ips) or ""}  # fmt: skip
            uvicorn.run(
                app,  # type: ignore[arg-type]
                host=host, port=port, log_level=log_level, access_log=True, workers=workers,
                factory=workers > 1, **tls, **proxies,
            )  # fmt: skip
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            if exc.code not in (0, None):
                raise ContestkitError(
                    f"The server could not listen on {host}:{port} (in use, or not an address of this host); "
                    "choose another --host/--port."
                ) from None
        finally:
            if core is not None:
                core.stop()  # the registry supervisor with it
            elif supervisor is not None:
                supervisor.stop()


def _die_with_parent(parent: int) -> None:
    """A worker ends when the server's parent process does, even by SIGKILL (Linux's parent-death signal):
    an orphan would keep the port and answer without a scheduler.

    SIGKILL, not SIGTERM: a worker shutting down gracefully still answered on the port for a moment,
    so a server restarted at once after a crash found its port taken (or a health check answered by
    the dying worker). The parent is gone; its requests are lost with it either way."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: uvicorn's parent still stops its workers on SIGTERM/SIGINT
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def worker_app() -> FastAPI:
    """The app of one API worker process (uvicorn's factory, called in each worker ``serve`` starts)."""
    from contestkit.server.app import create_app

    _die_with_parent(int(os.environ[_ENV_PARENT]))
    _configure_logging(os.environ.get(_ENV_LOG_LEVEL, "info"))
    return create_app(os.environ[_ENV_DATA_DIR], api_workers=int(os.environ[_ENV_WORKERS]))
