"""The job queue when something goes wrong at the worst moment: a shutdown just as a level ends, a
database write that fails while a job is being finished, a results file that cannot be written.

The scheduler and its queue (``Scheduler``) run in-process here, on a real database (``offline_contest``:
SQLite and PostgreSQL), with the TEST DOUBLE ``tests/server/fake_level_runner.py`` evaluating the levels.
The faults are injected (each test says how and why): a real database or disk cannot be made to fail on
demand at the one write that matters.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy.exc import OperationalError

from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.queue import jobqueue as job_queue
from tests.server.fake_level_runner import fake_level_runner
from tests.support.offline import Queue
from tests.support.polling import wait_until

if TYPE_CHECKING:
    from tests.support.offline import OfflineContest


def _fail_once(monkeypatch: pytest.MonkeyPatch, runner: job_queue.JobQueue, name: str, calls: list[str]) -> None:
    """The queue's ``name`` step raises a database error the first time, as a failed commit would
    (``Database.session`` rolls the transaction back, so nothing of that step is written)."""
    real = getattr(runner, name)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if name not in calls:
            calls.append(name)
            raise OperationalError("COMMIT", {}, Exception("database is locked (injected)"))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, name, failing)


def test_a_level_that_finished_just_before_a_shutdown_keeps_its_result(queue: Queue):
    """Injected: the shutdown (``Scheduler.stop``, as on SIGTERM) lands after the level runner has its
    ok result and before the queue records it. Real timing cannot hit that gap on demand, so the
    runner starts the shutdown itself and returns its finished result once the shutdown reached it."""
    runs: list[int] = []
    stopper: list[threading.Thread] = []

    def finishes_then_shutdown(task: Any, on_progress: Any, cancel: threading.Event) -> Any:
        result = fake_level_runner(task, on_progress, cancel)
        runs.append(task.index)
        assert result.ok
        shutdown = threading.Thread(target=queue.runner.stop, kwargs={"timeout": 10})
        shutdown.start()
        stopper.append(shutdown)  # only once started: the test thread joins whatever it finds here
        assert cancel.wait(10)  # the shutdown has reached this level
        return result

    queue.runner.executor = FunctionExecutor(finishes_then_shutdown)
    queue.start()
    job_id = queue.submit()
    deadline = time.monotonic() + 20
    while not stopper and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stopper, "the level never ran"
    stopper[0].join(20)
    queued = queue.contest.job(job_id)
    assert queued["status"] == "queued", queued  # back in the queue for the next start
    assert queued["workers"][0]["state"] == "finished", queued
    assert queued["workers"][0]["score"] == 6.0
    assert "error" not in queued["workers"][0]

    # The next start runs only the level that had not finished.
    def counted(task: Any, on_progress: Any, cancel: threading.Event) -> Any:
        runs.append(task.index)
        return fake_level_runner(task, on_progress, cancel)

    again = Queue(queue.contest, counted)
    again.start()
    try:
        done = again.wait(job_id, ("finished", "failed", "cancelled"))
    finally:
        again.runner.stop(timeout=10)
    assert done["status"] == "finished" and done["score"] == 6.0, done
    assert runs == [0, 1], runs


def test_a_job_whose_end_could_not_be_written_does_not_stay_running(
    offline_contest: OfflineContest,
    monkeypatch: pytest.MonkeyPatch,
):
    """Injected: the database write that ends the job (``JobQueue.finish``, then ``finish_failed``) fails once
    each, as a transient error (a locked SQLite file, a PostgreSQL fail-over) would; such an error
    cannot be produced on demand at that one commit. The monitor must pick the job up again."""
    config = offline_contest.config
    config.heartbeat_seconds, config.heartbeat_timeout = 0.2, 1.0
    queue = Queue(offline_contest)
    calls: list[str] = []
    _fail_once(monkeypatch, queue.runner.queue, "finish", calls)
    _fail_once(monkeypatch, queue.runner.queue, "finish_failed", calls)
    queue.start()
    try:
        job_id = queue.submit()
        done = queue.wait(job_id, ("finished", "failed", "cancelled"), timeout=15)
    finally:
        queue.runner.stop(timeout=10)
    assert calls == ["finish", "finish_failed"]
    # Its levels had finished: they are kept, and the job ends with their score.
    assert done["status"] == "finished" and done["score"] == 6.0, done
    assert [w["state"] for w in done["workers"]] == ["finished", "finished"]


def test_a_level_whose_end_cannot_be_written_is_shown_stalled_then_resumes(
    offline_contest: OfflineContest,
    monkeypatch: pytest.MonkeyPatch,
):
    """Injected: from the moment the second level ends, every write of the queue fails, as on a
    read-only or full data directory (which cannot be produced for one process's writes only, on
    both databases). The job must not be shown "running" longer than the heartbeat timeout; once
    writes work again it resumes by itself, the first level's result kept and the second run again."""
    config = offline_contest.config
    config.heartbeat_seconds, config.heartbeat_timeout = 0.2, 2.0
    queue = Queue(offline_contest)
    broken = threading.Event()
    first_failure: list[float] = []
    runs: list[int] = []

    def refuses(name: str) -> None:
        real = getattr(queue.runner.queue, name)

        def write(*args: Any, **kwargs: Any) -> Any:
            if broken.is_set():
                if not first_failure:
                    first_failure.append(time.monotonic())
                raise OperationalError("COMMIT", {}, Exception("attempt to write a readonly database (injected)"))
            return real(*args, **kwargs)

        monkeypatch.setattr(queue.runner.queue, name, write)

    for name in ("level_ended", "finish", "finish_failed", "heartbeat", "recover", "level_progress"):
        refuses(name)

    def counted(task: Any, on_progress: Any, cancel: threading.Event) -> Any:
        runs.append(task.index)
        result = fake_level_runner(task, on_progress, cancel)
        if task.index == 1 and runs.count(1) == 1:
            broken.set()
        return result

    queue.runner.executor = FunctionExecutor(counted)
    queue.start()
    try:
        job_id = queue.submit()
        deadline = time.monotonic() + 20
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = queue.contest.job(job_id, as_shown=True)
            if shown["status"] == "stalled":
                break
            time.sleep(0.05)
        stalled_after = time.monotonic() - first_failure[0]
        assert shown["status"] == "stalled", shown
        assert stalled_after <= config.heartbeat_timeout + 0.5, stalled_after
        assert "read-only or full" in shown["error"]
        assert [w["state"] for w in shown["workers"]] == ["finished", "stalled"], shown
        assert queue.contest.job(job_id)["status"] == "running"  # what is stored: nothing could be written
        broken.clear()
        done = queue.wait(job_id, ("finished", "failed", "cancelled"), timeout=20)
    finally:
        queue.runner.stop(timeout=10)
    assert done["status"] == "finished" and done["score"] == 6.0, done
    assert runs == [0, 1, 1]  # the recorded level kept, the unrecorded one run again
    assert done.get("resumes") == 1


def test_a_live_job_of_this_server_is_not_taken_for_an_orphan(queue: Queue):
    """The monitor's recovery leaves this server's running jobs alone, even when their heartbeat is
    late (a slow database): only a job with no live control here is an orphan."""
    release = threading.Event()

    def waits(task: Any, on_progress: Any, cancel: threading.Event) -> Any:
        release.wait(10)
        return fake_level_runner(task, on_progress, cancel)

    queue.runner.executor = FunctionExecutor(waits)
    queue.start()
    job_id = queue.submit()
    queue.wait(job_id, ("running",))
    from sqlalchemy import update

    from contestkit.server.storage.db import Job

    with queue.contest.database.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=0.0))
    assert queue.runner.recover() == []
    assert queue.contest.job(job_id)["status"] == "running"
    release.set()
    assert queue.wait(job_id, ("finished",))["score"] == 6.0


def test_a_finished_job_stays_finished_when_its_summary_cannot_be_written(
    queue: Queue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """Injected: writing ``summary.json`` raises OSError (a full disk), after the job's result is
    committed; a disk cannot be filled on demand at that one write."""
    real = job_queue.write_private

    def disk_full(path: Any, text: str) -> None:
        if path.name == "summary.json":
            raise OSError(28, "No space left on device (injected)")
        real(path, text)

    monkeypatch.setattr(job_queue, "write_private", disk_full)
    queue.start()
    job_id = queue.submit()
    done = queue.wait(job_id, ("finished", "failed", "cancelled"))
    # The queue logs the failed write as the last thing it does for the job: after it, nothing more comes.
    wait_until(
        lambda: any("summary" in r.getMessage() and r.levelname in ("ERROR", "WARNING") for r in caplog.records),
        timeout=20,
        message="the queue to log that summary.json could not be written",
    )
    done = queue.contest.job(job_id)
    assert done["status"] == "finished" and done["score"] == 6.0, done
    assert "error" not in done
