"""Executors: the engines that run level-runs, behind one interface the scheduler hands them to.

Why an interface: the scheduler (``server.scheduling``) decides *when* and *where* a level runs
(which job, how many at once, which CPU set); an executor decides *how* (local Docker containers
today, Kubernetes Jobs later). The scheduler only ever talks to ``Executor`` and ``LevelRun``:

- ``start(task)`` hands over one level-run and returns its handle;
- ``LevelRun.follow(on_progress)`` blocks until the run ends, reporting progress, and returns its
  result (an object with ``score``, ``episodes``, ``timesteps``, ``ok``, ``error``, ``summary``);
- ``LevelRun.cancel()`` stops it, from any thread (a team's cancel, the wall-clock watchdog, a
  server shutdown);
- ``adopt(task)`` after a server restart: the run of ``task`` that is still going in the engine, or
  None when nothing survives (then the level runs again from scratch);
- ``running()`` and ``discard(run)`` let the scheduler reconcile its queue against the engine, so
  nothing is left running for a job the server considers over.

Each level-run is described by one ``LevelTask``; executors read it whole and build their engine's
request from it in one place, so a new field reaches every executor through this one object.

Implementations: ``executors.docker`` (the default: ``contestkit eval``'s own Docker runtime) and
``executors.function`` (a host's ``evaluator: MODULE:FUNCTION`` from server.yaml, as the tests use);
``executors.pull`` pulls a job's image for both; ``executors.configured`` picks the one server.yaml
names (apart from this interface, which the implementations import: no cycle between them).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contestkit.runs.levelrun import LevelRunSpec


def render_videos(run: LevelRunSpec, level_dir: Path, cancelled: bool) -> None:
    """``record: true``: the job page plays the level's best and last episode, rendered here from the
    .bk2 recordings every executor brings back. One home, so Docker and Kubernetes levels get the
    same videos; a recording that cannot be rendered costs the page its video, not the level."""
    if not run.record or cancelled:
        return
    from contestkit.errors import ContestkitError
    from contestkit.runs import replay  # deferred: the emulator loads late

    try:
        replay.render_highlights(level_dir)
    except (ContestkitError, OSError):
        pass


@dataclass(frozen=True)
class LevelTask:
    """One level of one job for an executor: the level-run itself, plus which job it belongs to.

    What runs is ``run`` (the same :class:`~contestkit.runs.levelrun.LevelRunSpec` ``contestkit eval``
    builds); the rest identifies it (labels, adoption after a restart) and says where results go.
    """

    job_id: int
    index: int
    attempt: int
    team: str
    run: LevelRunSpec
    results_dir: Path


@dataclass(frozen=True)
class RunningLevel:
    """A level-run the engine reports as running: which job and level it belongs to."""

    job_id: int
    index: int


ProgressCallback = Callable[[Any], None]
"""Called with an object with ``timesteps``, ``timestep_limit``, ``episodes``, ``elapsed``, ``eta_seconds``."""


class LevelRun(ABC):
    """One level-run handed to an executor: followed to its end, cancellable from another thread."""

    def __init__(self, task: LevelTask) -> None:
        self.task = task
        self._cancelled = threading.Event()
        self._handed_over = time.monotonic()

    @abstractmethod
    def follow(self, on_progress: ProgressCallback) -> Any:
        """Block until the run ends, calling ``on_progress`` as it goes; return its result.

        A run that could not produce a result raises: ``ContestkitError`` (its sentence becomes the
        level's error) or anything else (recorded as an evaluator error). Either way only this level
        fails; the scheduler carries on with the others.
        """

    def budget_started(self) -> float | None:
        """When (monotonic) the current attempt's budget started; None while it waits for the engine.

        The watchdog counts the wall-clock budget from here, so a run that waits for a node or an
        image pull, or runs again after a disruption, gets its whole budget. By default the budget
        starts when the run is handed over (``started``, given by the scheduler).
        """
        return self._handed_over

    def recorded(self) -> None:
        """The scheduler has recorded the run's end: an engine that keeps it (a Job) may now remove it."""
        return None

    def cancel(self) -> None:
        """Stop the run as soon as possible; ``follow`` then returns what it has. Safe from any thread."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class Executor(ABC):
    """An engine that runs level-runs for the scheduler."""

    name: str = "executor"

    def resolve_image(self, reference: str) -> str:
        """The reference to run for a job's image, once per job attempt before its levels start.

        Executors that pull return the pulled ``repo@sha256:...`` so every level (and a resumed job)
        runs the very image that was pulled even if the tag moves. The default runs it as given.
        """
        return reference

    def reachable(self) -> tuple[bool, str]:
        """Whether the engine answers now, and a sentence saying so (``/rest/health``, ``/metrics``).

        True by default: an executor that runs in the server's own process is there when the server is.
        """
        return True, f"{self.name} runs level-runs in the server's process"

    def held(self) -> str | None:
        """Why no level-run may start now, in one sentence (the scheduler then claims nothing), or None.

        None by default. The Kubernetes executor holds level-runs while it cannot show that the
        cluster enforces the agents' NetworkPolicy: queued jobs wait rather than run unisolated.
        """
        return None

    def notices(self) -> list[str]:
        """Sentences the host must see about the engine (``/host``): a hold, or a risk run anyway."""
        return []

    @abstractmethod
    def start(self, task: LevelTask) -> LevelRun:
        """Hand over one level-run; the scheduler then follows it (and may cancel it)."""

    def adopt(self, task: LevelTask) -> LevelRun | None:
        """The run of ``task`` still going in the engine after a server restart, or None to run it again.

        None by default: an engine whose runs die with the server (local containers are stopped with
        it) has nothing to adopt.
        """
        return None

    def running(self) -> list[RunningLevel]:
        """Level-runs the engine is running now, whoever started them (for reconciling)."""
        return []

    def release(self) -> None:
        """The server is stopping: let go of runs that outlive it, so the next start adopts them.

        Nothing by default: an engine whose runs end with the server is simply stopped.
        """
        return None

    def discard(self, run: RunningLevel) -> None:
        """Stop and remove a level-run the scheduler no longer wants (its job is over or unknown).

        Nothing to do by default: an executor whose ``running`` reports none is never asked.
        """
        return None


__all__ = ["Executor", "LevelRun", "LevelTask", "ProgressCallback", "RunningLevel"]
