"""Scheduling: which queued job runs, how many levels at once, on which CPUs, and handing each to an executor.

Why: this is where a level is *placed*. The ``Scheduler`` claims jobs from the queue
(``server.queue``) up to ``parallel_jobs`` at a time, runs up to ``parallel_levels`` levels of each
in threads, lends each level a CPU set of its own when server.yaml lists ``cpusets`` (a level waits,
pending, until one is free), builds its ``LevelTask`` and hands it to the executor
(``server.executors``: Docker by default). It also stops what must stop: a level that overruns its
wall-clock budget (the watchdog), a job its team cancelled (even through another server process),
and everything on a shutdown.

One thread ("monitor") keeps the heartbeat, notices cancel requests, runs the watchdog, recovers
jobs whose server died, and reconciles the executor's running level-runs with the queue.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contestkit.containers import imageref
from contestkit.errors import ContestkitError
from contestkit.runs.cpuset import CpuSet
from contestkit.runs.levelrun import LevelRunSpec
from contestkit.server import metrics
from contestkit.server.config import ExecutorKind, ServerConfig
from contestkit.server.executors import Executor, LevelRun, LevelTask
from contestkit.server.queue import run_limits
from contestkit.server.queue.jobqueue import ClaimedJob, JobQueue, PendingLevel
from contestkit.server.queue.seeds import level_seed
from contestkit.server.storage.db import Database
from contestkit.states import StopReason

LOOK_SPACING = 0.02  # seconds between two looks other processes ask for (``Scheduler.look``)
log = logging.getLogger("contestkit.server.queue.scheduling")


@dataclass
class _LevelWatch:
    """A running level as the monitor sees it: its run (to cancel) and its wall-clock deadline."""

    run: LevelRun
    budget: float  # the wall-clock budget plus the grace
    overran: bool = False

    def deadline_now(self) -> float:
        """The current attempt's deadline: from when its budget started (a re-run gets a fresh one);
        none while the engine has not started it (the engine bounds that wait itself)."""
        began = self.run.budget_started()
        return float("inf") if began is None else began + self.budget


@dataclass
class _JobControl:
    job_id: int
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: StopReason | None = None
    levels: dict[int, _LevelWatch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Levels whose end could not be written yet: while any is, the job's heartbeat stops, so that
    # readers see it stalled (not "running") within the heartbeat timeout.
    unrecorded: int = 0

    def stop(self, reason: StopReason) -> None:
        with self.lock:
            if self.reason is None:
                self.reason = reason
            self.cancel.set()
            for watch in self.levels.values():
                watch.run.cancel()


INSTANCE_ENV = "CONTESTKIT_INSTANCE"


def default_instance(config: ServerConfig) -> str:
    """Who runs a job: this server and data directory (a lock keeps one server per data directory).

    The server is its host, unless ``CONTESTKIT_INSTANCE`` names it: the Kubernetes manifests set
    it to the Deployment's name, so a new pod (a new hostname) after a restart is the same server,
    recovers its own jobs at once and adopts their Jobs.
    """
    return f"{os.environ.get(INSTANCE_ENV) or socket.gethostname()}:{config.data_dir}"[:128]


class CpusetPool:
    """The host's CPU sets (server.yaml ``cpusets``), lent to running levels one each.

    Why: levels evaluated at once on one host otherwise share CPUs, and a level's wall-clock
    budget (and its timesteps per second) would then depend on what its neighbours run. A level
    waits, still pending, until a set is free, so the sets also cap how many levels run at once.
    """

    def __init__(self, sets: list[CpuSet]) -> None:
        self._limited = bool(sets)
        self._free: queue.Queue[CpuSet] = queue.Queue()
        for text in sets:
            self._free.put(text)

    @contextmanager
    def lend(self, cancel: threading.Event, poll: float = 0.5) -> Iterator[CpuSet | None]:
        """A free set for the ``with`` block, waiting for one.

        None when the host configured no sets, and also when ``cancel`` came first: callers
        check ``cancel`` before starting anything.
        """
        lent: CpuSet | None = None
        while self._limited and lent is None and not cancel.is_set():
            try:
                lent = self._free.get(timeout=poll)
            except queue.Empty:
                continue
        try:
            yield lent
        finally:
            if lent is not None:
                self._free.put(lent)


class Scheduler:
    """Claims queued jobs and runs their levels through the executor, in threads of this process."""

    def __init__(
        self,
        database: Database,
        config: ServerConfig,
        executor: Executor,
        *,
        instance: str | None = None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.config = config
        self.executor = executor
        self.instance = instance or default_instance(config)
        self.queue = JobQueue(database, config, self.instance)
        self.poll_seconds = poll_seconds
        self._controls: dict[int, _JobControl] = {}
        self._controls_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._look = threading.Event()  # another process asked: check cancels now (``look``)
        self._cpusets = CpusetPool(config.cpu_sets())
        self.limits, notes = run_limits.agent_limits(
            config.agent_memory, config.agent_pids_limit, config.agent_out_limit, config.agent_log_limit
        )
        for note in notes:
            log.warning("%s", note)

    # -- lifecycle --

    def start(self) -> None:
        """Recover what a previous run of this server left running, then start claiming jobs."""
        if self.config.seed is not None:
            log.warning(
                "server.yaml fixes seed: %s, so every job is evaluated with the same frame-skip randomness; "
                "set `seed: null` to draw a fresh seed for each job attempt",
                self.config.seed,
            )
        self.recover(startup=True)
        for target, name in ((self._claim_loop, "contestkit-claim"), (self._monitor_loop, "contestkit-monitor")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, stop running levels, and put their jobs back in the queue for the next start."""
        self._stop.set()
        self._wake.set()
        with self._controls_lock:
            controls = list(self._controls.values())
        self.executor.release()  # runs that outlive the server (Kubernetes Jobs) are adopted at the next start
        for control in controls:
            control.stop(StopReason.SHUTDOWN)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        # Jobs whose levels did not end in time: requeue them in the database directly.
        self.queue.requeue_mine()

    def wake(self) -> None:
        """A job was queued: look now instead of at the next poll."""
        self._wake.set()

    def look(self) -> None:
        """Another process of this server (an API worker) changed the queue: claim now, and check now
        whether a team asked to cancel a running job (the monitor would in half a second)."""
        self._look.set()
        self._wake.set()

    def cancel(self, job_id: int) -> None:
        """Stop a running job of this process at once (the API already set cancel_requested)."""
        with self._controls_lock:
            control = self._controls.get(job_id)
        if control is not None:
            control.stop(StopReason.USER)

    def recover(self, *, startup: bool = False) -> list[int]:
        """Requeue (or fail) running jobs whose server is gone (``JobQueue.recover``); returns their ids."""
        with self._controls_lock:
            live = set(self._controls)
        recovered = self.queue.recover(live, startup=startup)
        if recovered:
            self._wake.set()
        return recovered

    def reconcile(self) -> list[int]:
        """Discard level-runs the executor runs for jobs not running here; returns their job ids.

        Nothing may run for a job the server considers over (cancelled, failed, requeued after its
        server died). An executor whose runs end with this process (Docker) reports none.
        """
        with self._controls_lock:
            live = set(self._controls)
        runs = [run for run in self.executor.running() if run.job_id not in live]
        # A job running under another (or an earlier) server, or queued again after one stopped, has
        # level-runs that the server claiming it adopts by name: never delete those.
        adoptable = self.queue.adoptable({run.job_id for run in runs}) if runs else {}
        discarded: list[int] = []
        for run in runs:
            attempt = getattr(run, "attempt", None)
            if run.job_id in adoptable and attempt in (None, adoptable[run.job_id]):
                continue
            self.executor.discard(run)
            discarded.append(run.job_id)
        return discarded

    # -- claiming --

    def _claim_loop(self) -> None:
        while not self._stop.is_set():
            try:
                # Held (e.g. the cluster's NetworkPolicy not shown to be enforced): jobs stay queued.
                while (
                    self._running_count() < self.config.parallel_jobs
                    and not self._stop.is_set()
                    and self.executor.held() is None
                ):
                    job_id = self.queue.claim()
                    if job_id is None:
                        break
                    control = _JobControl(job_id)
                    with self._controls_lock:
                        self._controls[job_id] = control
                    thread = threading.Thread(target=self._run_job, args=(control,), name=f"job-{job_id}", daemon=True)
                    thread.start()
                    self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            except Exception:  # noqa: BLE001 - the queue must survive a database hiccup
                log.exception("claiming a job failed; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _running_count(self) -> int:
        with self._controls_lock:
            return len(self._controls)

    # -- the monitor --

    def _monitor_loop(self) -> None:
        last_beat = 0.0
        last_recover = time.monotonic()
        while not self._stop.is_set():
            asked = self._look.wait(0.5)
            self._look.clear()
            if self._stop.is_set():
                return
            try:
                with self._controls_lock:
                    controls = dict(self._controls)
                # Wall-clock watchdog: a level that overruns its budget (plus grace) is stopped.
                mono = time.monotonic()
                for control in controls.values():
                    with control.lock:
                        for watch in control.levels.values():
                            if mono > watch.deadline_now() and not watch.run.cancelled:
                                watch.overran = True
                                watch.run.cancel()
                beating = [job_id for job_id, control in controls.items() if not control.unrecorded]
                if beating:
                    beat = time.time() - last_beat >= self.config.heartbeat_seconds
                    for job_id in self.queue.heartbeat(beating, beat=beat):
                        controls[job_id].stop(StopReason.USER)
                    if beat:
                        last_beat = time.time()
                if mono - last_recover >= max(self.config.heartbeat_timeout / 2, 1.0):
                    last_recover = mono
                    self.recover()
                    self.reconcile()
            except Exception:  # noqa: BLE001
                log.exception("job monitor tick failed; continuing")
            if asked:
                self._stop.wait(LOOK_SPACING)  # a flood of doorbell rings makes a bounded number of looks

    # -- running a job --

    def _run_job(self, control: _JobControl) -> None:
        job_id = control.job_id
        try:
            self._run_levels(control)
        except Exception as exc:  # noqa: BLE001 - whatever happens, the job must not stay "running"
            message = str(exc) if isinstance(exc, ContestkitError) else f"internal error: {type(exc).__name__}: {exc}"
            if not isinstance(exc, ContestkitError):
                log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            try:
                self.queue.finish_failed(job_id, control.reason, message)
            except Exception:  # noqa: BLE001 - e.g. the database is down; recover() picks the job up
                log.exception("could not record the end of job %s; the monitor puts it back in the queue", job_id)
        finally:
            with self._controls_lock:
                # A restart may already have been claimed under the same id: leave its control alone.
                if self._controls.get(job_id) is control:
                    del self._controls[job_id]
            self._wake.set()

    def _run_levels(self, control: _JobControl) -> None:
        """Place the job's pending levels: ``parallel_levels`` at once, each on a lent CPU set."""
        job = self.queue.claimed(control.job_id)
        reference = str(imageref.parse(job.image).pinned(job.digest)) if job.digest else job.image
        if not control.cancel.is_set():
            resolved = self.executor.resolve_image(reference)
            digest = imageref.parse(resolved).digest
            if resolved != reference and digest is not None:
                self.queue.set_digest(job.job_id, digest)
            reference = resolved
        job.attempt_dir.mkdir(parents=True, exist_ok=True)

        def place(level: PendingLevel) -> None:
            with self._cpusets.lend(control.cancel) as cpus:
                if control.cancel.is_set():
                    return
                self._run_level(control, level, self._task(job, level, reference, cpus))

        with ThreadPoolExecutor(
            max_workers=self.config.parallel_levels, thread_name_prefix=f"job-{control.job_id}"
        ) as pool:
            list(pool.map(place, job.pending))
        self.queue.finish(control.job_id, control.reason, job.attempt_dir)

    def _task(self, job: ClaimedJob, level: PendingLevel, image: str, cpus: CpuSet | None) -> LevelTask:
        """The one place a level-run is described for the executors."""
        run = LevelRunSpec(
            game=level.name.game,
            state=level.name.state,
            image=image,
            timestep_limit=job.timestep_limit,
            wallclock_limit=job.wallclock_limit,
            seed=level_seed(job.seed, level.index),
            record=self.config.record,
            cpuset=cpus,
            out_limit=self.limits.out_bytes,
        )
        # The Docker-only bounds, for this host's engine only: the local runtime refuses them, and the
        # Kubernetes executor sizes pods from its own settings (the memory cap is this host's).
        if self.config.executor is ExecutorKind.DOCKER:
            run = run.replace(memory=self.limits.memory, pids_limit=self.limits.pids, log_limit=self.limits.log_bytes)
        return LevelTask(
            job_id=job.job_id,
            index=level.index,
            attempt=job.attempt,
            team=job.team,
            run=run,
            results_dir=_fresh_dir(job.attempt_dir / level_dir_name(level.index, *level.name)),
        )

    def _run_level(self, control: _JobControl, level: PendingLevel, task: LevelTask) -> None:
        run = self.executor.adopt(task) or self.executor.start(task)
        started = time.monotonic()
        watch = _LevelWatch(run=run, budget=task.run.wallclock_limit + self.config.budget_grace_seconds)
        with control.lock:
            control.levels[level.worker_id] = watch
            if control.cancel.is_set():
                run.cancel()
        self.queue.level_started(level.worker_id, task.results_dir)

        last_write = [0.0]

        def on_progress(progress: Any) -> None:
            mono = time.monotonic()
            if mono - last_write[0] < 1.0:
                return
            last_write[0] = mono
            try:
                self.queue.level_progress(
                    level.worker_id, progress, mono - started, task.run.timestep_limit, task.run.wallclock_limit
                )
            except Exception:  # noqa: BLE001 - progress is best effort; the result is what counts
                log.exception("could not record progress of worker %s", level.worker_id)

        result: Any = None
        error: str | None = None
        try:
            result = run.follow(on_progress)
        except ContestkitError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one level's failure must not sink the others
            log.error("level %s of job %s crashed:\n%s", task.index, task.job_id, traceback.format_exc())
            error = f"evaluator error: {type(exc).__name__}: {exc}"
        finally:
            with control.lock:
                control.levels.pop(level.worker_id, None)
        _write_reward_curve(task)
        self._record_level_end(control, level, watch, result, error)
        try:
            run.recorded()  # only now may the engine remove what it kept (a Job): it is never run twice
        except Exception:  # noqa: BLE001 - the record is written; reconcile removes it later
            log.exception("could not clean up level %s of job %s", task.index, task.job_id)
        metrics.level_ended(time.monotonic() - started, result, reason=control.reason, overran=watch.overran)

    def _record_level_end(
        self, control: _JobControl, level: PendingLevel, watch: _LevelWatch, result: Any, error: str | None
    ) -> None:
        """Write a level's end, retrying while the database refuses (a full disk being cleared).

        Why not fail at once: a level's result is hours of a team's budget, and a write refused for
        a few seconds should not cost it. Why not retry for ever: while the write is pending, the
        job stops beating (readers see it "stalled" once the heartbeat timeout passes, never a
        "running" level that has ended); after half the heartbeat timeout the job's other levels
        are stopped and the job is left to recovery, which requeues it once writes work again, its
        recorded levels kept and this one run again.
        """
        give_up = time.monotonic() + max(self.config.heartbeat_timeout / 2, 1.0)
        pause = 0.5
        failed = False
        while True:
            try:
                self.queue.level_ended(level.worker_id, control.reason, watch.overran, result, error)
            except Exception:
                if not failed:
                    failed = True
                    with control.lock:
                        control.unrecorded += 1
                    log.exception("could not record level %s of job %s; retrying", level.index, control.job_id)
                if time.monotonic() + pause > give_up or self._stop.is_set():
                    log.error(
                        "gave up recording level %s of job %s; its other levels stop and the job is requeued "
                        "once the database accepts writes", level.index, control.job_id,
                    )  # fmt: skip
                    control.stop(StopReason.UNWRITABLE)
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            if failed:
                with control.lock:
                    control.unrecorded -= 1
            return


def _write_reward_curve(task: LevelTask) -> None:
    """reward-curve.svg beside the level's monitor.csv, as `contestkit eval` draws it, whatever the
    executor (best effort)."""
    from contestkit.runs.curves import write_level_curve

    try:
        write_level_curve(task.results_dir)
    except Exception:  # noqa: BLE001 - a picture must not fail the level
        log.exception("could not draw the reward curve of %s", task.results_dir)


def level_dir_name(idx: int, game: str, state: str) -> str:
    """A level's results directory under its attempt's: ``NN-Game-State`` (the results API lists them so)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{game}-{state}")
    return f"{idx:02d}-{safe}"


def _fresh_dir(path: Path) -> Path:
    """A new, empty results directory; a previous partial one (an interrupted run) is kept beside it."""
    if path.exists() and any(path.iterdir()):
        n = 1
        while path.with_name(f"{path.name}.interrupted-{n}").exists():
            n += 1
        shutil.move(str(path), str(path.with_name(f"{path.name}.interrupted-{n}")))
    path.mkdir(parents=True, exist_ok=True)
    return path
