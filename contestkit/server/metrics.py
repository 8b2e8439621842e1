"""Prometheus metrics of the contest server: ``GET /metrics`` in Prometheus' text format.

Why these: a host wants to know how long the queue is, how many level-runs run and on what, whether
they are stuck, how fast they go, how the server answers, and whether someone is guessing passwords.

- What the database holds (jobs by state, the queue, running level-runs, the oldest heartbeat of a
  running job) is read *at scrape time* by a collector, so the figures are right whichever server
  process changed the rows, and nothing has to be kept in step as jobs move.
- What happens inside this process (request latency by route, level-runs ending, failed logins) is
  observed as it happens, in module-level histograms and counters: the queue reports a level's end
  with one call, ``level_ended``, wherever that end is recorded.

Every label is a closed set, so no client can grow the number of series (and the scrape, and this
process's memory) by sending made-up requests: routes are the path template the router matched
(``/jobs/{job_id}``) or ``unmatched``, never the raw path; methods are the standard HTTP ones or
``other``; statuses are the codes this server answers with.

``/metrics`` is public, as the leaderboard is: it holds aggregates only (queue length, jobs by
state, latency by route template, failed logins), never a team, job id or level name, and with the
closed label sets above its size is bounded (``tests/server/test_metrics.py`` checks both).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from contestkit.server.executors import Executor
from contestkit.server.storage.db import ACTIVE, QUEUED, RUNNING, TERMINAL, Database, Job, Worker, now
from contestkit.states import LevelOutcome, StopReason

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUEST_SECONDS = Histogram(
    "contestkit_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method (API and pages).",
    ("route", "method"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
REQUESTS = Counter(
    "contestkit_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ("route", "method", "status"),
    registry=REGISTRY,
)
LEVEL_RUN_SECONDS = Histogram(
    "contestkit_level_run_duration_seconds",
    "Wall-clock time of level-runs that ended in this process, by how they ended.",
    ("outcome",),
    buckets=(1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400),
    registry=REGISTRY,
)
LEVEL_RUN_STEPS_PER_SECOND = Histogram(
    "contestkit_level_run_steps_per_second",
    "Timesteps per second of level-runs that ended in this process (the contest's budget is 1M steps in 12 h).",
    buckets=(10, 25, 50, 100, 200, 400, 600, 800, 1000, 1500, 2000, 5000),
    registry=REGISTRY,
)
LOGIN_FAILURES = Counter(
    "contestkit_login_failures",
    "Logins refused for a wrong email or password (API and sign-in page).",
    registry=REGISTRY,
)

UNMATCHED = "unmatched"
OTHER_METHOD = "other"
# The methods that get a label of their own (RFC 9110's, plus PATCH); any other is ``other``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})


def method_label(method: str) -> str:
    """The method's label: itself when standard, else ``other`` (a client may send any token)."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    """The status's label: the code when it is a valid HTTP status (100-599), else ``other``."""
    return str(status) if 100 <= status <= 599 else OTHER_METHOD


def level_ended(seconds: float, result: Any, *, reason: StopReason | None = None, overran: bool = False) -> None:
    """Called once where a level-run's end is recorded: its duration, and its speed when it stepped.

    ``result`` is the level runner's (``ok``, ``timesteps``), or None when it raised; ``reason`` is why
    the job was stopped, if it was; ``overran``: the watchdog stopped it. The outcome label is a
    :class:`~contestkit.states.LevelOutcome`, derived from the same states the database stores.
    """
    outcome = LevelOutcome.of(bool(getattr(result, "ok", False)), reason, overran).value
    LEVEL_RUN_SECONDS.labels(outcome=outcome).observe(max(0.0, seconds))
    timesteps = getattr(result, "timesteps", None)
    if timesteps and seconds > 0:
        LEVEL_RUN_STEPS_PER_SECOND.observe(timesteps / seconds)


def login_failed() -> None:
    """Called once by the login route for each refused password (the sign-in page goes through it too)."""
    LOGIN_FAILURES.inc()


class ExecutorProbe:
    """Whether the engine that runs level-runs answers (the executor's own check), asked at most every
    ``every`` seconds: health checks and scrapes come often and the answer changes rarely."""

    def __init__(self, executor: Executor, every: float = 5.0) -> None:
        self.executor = executor.name
        self._reachable = executor.reachable
        self.every = every
        self._last: tuple[float, bool, str] | None = None
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, str]:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self.every:
                return self._last[1], self._last[2]
        ok, detail = self._reachable()
        with self._lock:
            self._last = (time.monotonic(), ok, detail)
        return ok, detail


class DatabaseCollector(Collector):
    """Figures read from the database at each scrape: right whichever process moved the jobs."""

    def __init__(self, database: Database, probe: ExecutorProbe, heartbeat_timeout: float) -> None:
        self.database = database
        self.probe = probe
        self.executor = probe.executor
        self.heartbeat_timeout = heartbeat_timeout

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.database.session() as session:
            by_state = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            # Through the running jobs (the jobs' status index, then workers by job): the workers
            # table grows by a row per level of every job, and has no index on its status.
            running_jobs = select(Job.id).where(Job.status == RUNNING)
            running_levels = session.scalar(
                select(func.count())
                .select_from(Worker)
                .where(Worker.job_id.in_(running_jobs), Worker.status == RUNNING)
            )
            oldest_beat = session.scalar(select(func.min(Job.heartbeat_at)).where(Job.status == RUNNING))
            stale = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status == RUNNING, Job.heartbeat_at < now() - self.heartbeat_timeout)
            )
        jobs = GaugeMetricFamily("contestkit_jobs", "Jobs in the database, by state.", labels=["state"])
        for state in (*ACTIVE, *TERMINAL):
            jobs.add_metric([state], float(by_state.get(state, 0)))
        yield jobs
        yield GaugeMetricFamily(
            "contestkit_queue_length", "Jobs waiting to be claimed.", value=float(by_state.get(QUEUED, 0))
        )
        levels = GaugeMetricFamily(
            "contestkit_level_runs_running", "Level-runs running now, by executor.", labels=["executor"]
        )
        levels.add_metric([self.executor], float(running_levels or 0))
        yield levels
        yield GaugeMetricFamily(
            "contestkit_running_job_heartbeat_age_seconds",
            "Seconds since the stalest running job's heartbeat (0 when none runs): a stuck server shows here.",
            value=max(0.0, now() - oldest_beat) if oldest_beat is not None else 0.0,
        )
        up = GaugeMetricFamily(
            "contestkit_executor_up", "1 when the engine that runs level-runs answers.", labels=["executor"]
        )
        up.add_metric([self.executor], 1.0 if self.probe.check()[0] else 0.0)
        yield up
        yield GaugeMetricFamily(
            "contestkit_running_jobs_stale",
            "Running jobs whose heartbeat is older than heartbeat_timeout (their server is gone or stuck).",
            value=float(stale or 0),
        )


class Metrics:
    """One server's metrics: the process-wide ones above plus its database's figures."""

    def __init__(
        self, database: Database, executor: Executor, heartbeat_timeout: float, probe_every: float = 5.0
    ) -> None:
        """``probe_every``: 0 for an executor whose answer is already shared (an API worker's published one)."""
        self.probe = ExecutorProbe(executor, probe_every)
        self.database_registry = CollectorRegistry(auto_describe=False)
        self.database_registry.register(DatabaseCollector(database, self.probe, heartbeat_timeout))
        self.process_registry = REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            # ``server run --workers N``: every process (the workers, the scheduler's parent) writes its
            # counts to files there, and a scrape of any worker adds them all up (prometheus_client's
            # own multiprocess mode), so no figure depends on which worker answered.
            self.process_registry = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(self.process_registry)

    def exposition(self) -> tuple[bytes, str]:
        """The text a Prometheus scrape gets, and its content type."""
        return generate_latest(self.process_registry) + generate_latest(self.database_registry), CONTENT_TYPE_LATEST


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class LatencyMiddleware:
    """Times every HTTP request and labels it with the route template the router matched.

    A plain ASGI middleware (not Starlette's BaseHTTPMiddleware): it adds no task or body copy to
    each request, which matters at hundreds of requests a second on two cores.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = method_label(scope.get("method", "GET"))
            REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)
            REQUESTS.labels(route, method, status_label(status[0])).inc()
