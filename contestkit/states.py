"""The vocabularies of a job's life: job and level states, why a job was stopped, how a level-run ended.

Why one module with no dependencies: the server stores these words in its database, sends them in its
answers, and the CLI reads them back from those answers (``contestkit status``, ``host``); with one
home each, a word cannot be spelt one way where it is written and another where it is read. The enums
are ``str``-valued, so the stored values and the JSON are the words they always were ("queued",
"finished", ...), and a member compares equal to its word.
"""

from __future__ import annotations

from enum import Enum


class Word(str, Enum):
    """A str-valued enum that prints as its word (``f"{JobState.QUEUED}"`` is "queued"), as
    ``enum.StrEnum`` does on Python 3.11+; so a state written into a message or a table reads the same
    as the bare string it replaced."""

    __str__ = str.__str__
    __format__ = str.__format__


class JobState(Word):
    """A job's state, as stored in ``jobs.status`` and shown by the API and the CLI."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Shown, never stored: a running job whose heartbeat is older than the heartbeat timeout (its server
    # died, or cannot write to its database). Recovery requeues it; until then it is not "running".
    STALLED = "stalled"

    @property
    def active(self) -> bool:
        """Queued or running (or stalled): a team has at most one such job."""
        return self in ACTIVE_JOB_STATES or self is JobState.STALLED

    @property
    def terminal(self) -> bool:
        """It has ended and will not change again."""
        return self in TERMINAL_JOB_STATES


class LevelState(Word):
    """The state of one level of a job (a "worker" in the 2018 API), as stored in ``workers.state``."""

    PENDING = "pending"  # not started yet
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_LEVEL_STATES


#: The states a stored job is active in: the database allows one such job per team (a unique partial
#: index), and the migrations write the same two words into that index.
ACTIVE_JOB_STATES: tuple[JobState, ...] = (JobState.QUEUED, JobState.RUNNING)
TERMINAL_JOB_STATES: tuple[JobState, ...] = (JobState.FINISHED, JobState.FAILED, JobState.CANCELLED)
TERMINAL_LEVEL_STATES: tuple[LevelState, ...] = (LevelState.FINISHED, LevelState.FAILED, LevelState.CANCELLED)


class StopReason(Word):
    """Why a running job was stopped before its levels ended."""

    USER = "user"  # the team cancelled it
    SHUTDOWN = "shutdown"  # the server is stopping; the job goes back to the queue
    # A level's end could not be written (read-only or full data directory): the job's other levels
    # stop, its heartbeat stops, and recovery puts it back in the queue once writes work again.
    UNWRITABLE = "unwritable"


class LevelOutcome(Word):
    """How a level-run ended, as the ``outcome`` label of the server's metrics: the level's end state,
    or why it was cut short."""

    FINISHED = LevelState.FINISHED.value
    FAILED = LevelState.FAILED.value
    CANCELLED = LevelState.CANCELLED.value  # stopped for StopReason.USER
    INTERRUPTED = "interrupted"  # stopped for StopReason.SHUTDOWN before it ended well: it runs again
    OVERRAN = "overran"  # the watchdog stopped it past its wall-clock budget and grace

    @classmethod
    def of(cls, ok: bool, reason: StopReason | None, overran: bool) -> LevelOutcome:
        """The outcome of a level-run that ended well (``ok``) or not, stopped for ``reason``, if any."""
        if overran:
            return cls.OVERRAN
        if reason is StopReason.USER:
            return cls.CANCELLED
        if reason is StopReason.SHUTDOWN and not ok:
            return cls.INTERRUPTED
        return cls.FINISHED if ok else cls.FAILED


class ProgressStatus(Word):
    """Where a level-run is, in the progress reports an evaluation sends (``on_progress``)."""

    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
