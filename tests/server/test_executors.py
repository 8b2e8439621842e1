"""The executor interface the scheduler hands level-runs to, and the one place refusals become HTTP statuses.

The scheduler runs here in-process on a real SQLite contest (``offline_contest``). ``RecordingExecutor``
is a TEST DOUBLE of an engine: it stands for the Kubernetes executor of a later issue, which cannot run
on these machines; it drives the interface exactly as the scheduler does (start, follow, cancel, adopt,
running/discard), so an engine that implements the interface plugs in without touching the scheduler.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.exceptions import RequestValidationError

from contestkit.errors import ContestkitError
from contestkit.runs.levelrun import LevelRunSpec
from contestkit.server import errors
from contestkit.server.api import errors as answers
from contestkit.server.config import load_config
from contestkit.server.executors import Executor, LevelRun, LevelTask, RunningLevel
from contestkit.server.executors.configured import load_executor
from contestkit.server.executors.docker import DockerExecutor
from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.queue import operations
from contestkit.server.queue.scheduling import Scheduler
from tests.server.fake_level_runner import fake_level_runner

if TYPE_CHECKING:
    from tests.support.offline import OfflineContest


@dataclass
class RecordingRun(LevelRun):
    """A level-run of the fake engine: ends with the fake game's result, or when cancelled."""

    task: LevelTask
    hold: threading.Event | None = None
    adopted: bool = False

    def __post_init__(self) -> None:
        LevelRun.__init__(self, self.task)

    def follow(self, on_progress: Any) -> Any:
        if self.hold is not None:
            while not self.hold.is_set() and not self.cancelled:
                time.sleep(0.02)
        return fake_level_runner(self.task, on_progress, self._cancelled)


@dataclass
class RecordingExecutor(Executor):
    name: str = "recording"
    started: list[RecordingRun] = field(default_factory=list)
    adoptable: set[int] = field(default_factory=set)  # level indexes "still running in the engine"
    engine_runs: list[RunningLevel] = field(default_factory=list)
    discarded: list[RunningLevel] = field(default_factory=list)
    hold: threading.Event | None = None

    def start(self, task: LevelTask) -> LevelRun:
        run = RecordingRun(task, self.hold)
        self.started.append(run)
        return run

    def adopt(self, task: LevelTask) -> LevelRun | None:
        if task.index not in self.adoptable:
            return None
        return RecordingRun(task, adopted=True)

    def running(self) -> list[RunningLevel]:
        return list(self.engine_runs)

    def discard(self, run: RunningLevel) -> None:
        self.discarded.append(run)


def _wait(contest: OfflineContest, job_id: int, statuses: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = contest.job(job_id)
        if doc["status"] in statuses:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {statuses} within {timeout} s: {doc}")


def _scheduler(contest: OfflineContest, executor: Executor) -> Scheduler:
    return Scheduler(contest.database, contest.config, executor, poll_seconds=0.05)


def _run_one_job(contest: OfflineContest, executor: Executor) -> dict[str, Any]:
    """Submit a job, let a scheduler with ``executor`` run it to its end; its document."""
    scheduler = _scheduler(contest, executor)
    scheduler.start()
    try:
        job_id = operations.start_job(contest.database, contest.config, contest.team_id, "v1").id
        scheduler.wake()
        return _wait(contest, job_id, ("finished", "failed", "cancelled"))
    finally:
        scheduler.stop(timeout=10)


def test_the_scheduler_hands_each_level_to_the_executor_as_one_task(offline_contest: OfflineContest):
    executor = RecordingExecutor()
    done = _run_one_job(offline_contest, executor)
    job_id = done["id"]
    assert done["status"] == "finished", done
    config = offline_contest.config
    tasks = sorted((run.task for run in executor.started), key=lambda t: t.index)
    assert [(t.index, t.run.game, t.run.state) for t in tasks] == [(0, "Fake", "Level1"), (1, "Fake", "Level2")]
    for task in tasks:
        assert (task.job_id, task.attempt, task.team) == (job_id, 1, _namespace(offline_contest))
        assert task.run.image == f"{config.registry}/{_namespace(offline_contest)}/agent:v1"
        assert task.run.seed == done["seed"] + task.index  # the attempt's seed (server.seeds)
        assert (task.run.timestep_limit, task.run.wallclock_limit) == (config.timestep_limit, config.wallclock_limit)
        assert task.results_dir.is_dir() and task.results_dir.parent.name == "attempt-1"


def _namespace(contest: OfflineContest) -> str:
    from contestkit.server.storage.db import Team

    with contest.database.session() as db:
        team = db.get(Team, contest.team_id)
        assert team is not None
        return team.namespace


def test_a_cancel_reaches_the_running_level_run(offline_contest: OfflineContest):
    executor = RecordingExecutor(hold=threading.Event())  # the run holds until cancelled
    scheduler = _scheduler(offline_contest, executor)
    scheduler.start()
    try:
        contest = offline_contest
        job_id = operations.start_job(contest.database, contest.config, contest.team_id, "v1").id
        scheduler.wake()
        _wait(contest, job_id, ("running",))
        deadline = time.monotonic() + 10
        while not executor.started and time.monotonic() < deadline:
            time.sleep(0.02)
        operations.kill_job(contest.database, contest.team_id, job_id)
        scheduler.cancel(job_id)
        done = _wait(contest, job_id, ("finished", "failed", "cancelled"))
    finally:
        scheduler.stop(timeout=10)
    assert done["status"] == "cancelled", done
    assert executor.started and all(run.cancelled for run in executor.started)


def test_a_level_the_engine_still_runs_is_adopted_not_started_again(offline_contest: OfflineContest):
    executor = RecordingExecutor(adoptable={0})
    done = _run_one_job(offline_contest, executor)
    assert done["status"] == "finished", done
    assert [run.task.index for run in executor.started] == [1]  # level 0 was adopted


def test_reconcile_discards_runs_of_jobs_this_server_does_not_run(offline_contest: OfflineContest):
    executor = RecordingExecutor(engine_runs=[RunningLevel(job_id=99, index=0)])
    scheduler = _scheduler(offline_contest, executor)
    assert scheduler.reconcile() == [99]
    assert executor.discarded == [RunningLevel(job_id=99, index=0)]


def test_server_yaml_chooses_the_executor(offline_contest: OfflineContest):
    config = load_config(offline_contest.data_dir)
    assert config.evaluator == "tests.server.fake_level_runner:fake_level_runner"
    chosen = load_executor(config)
    assert isinstance(chosen, FunctionExecutor)
    function = chosen.function
    assert (function.__module__, function.__name__) == ("tests.server.fake_level_runner", "fake_level_runner")
    assert chosen.pull_with is None  # the offline contest is made with --no-pull
    config.evaluator, config.pull_images = None, True
    docker = load_executor(config)
    assert isinstance(docker, DockerExecutor)
    assert docker.pull_with is not None and docker.pull_with.username == config.evaluator_username
    assert docker.adopt(_task(offline_contest)) is None  # nothing of a Docker level-run survives a restart


def _task(contest: OfflineContest) -> LevelTask:
    return LevelTask(
        job_id=1,
        index=0,
        attempt=1,
        team="team",
        run=LevelRunSpec(game="Fake", state="Level1", image="x:1", timestep_limit=10, wallclock_limit=10, seed=0),
        results_dir=contest.data_dir,
    )


# -- refusals and their HTTP statuses ------------------------------------------------------------


def _refusals() -> list[type[errors.Refused]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.Refused) and value is not errors.Refused
    ]


def test_every_refusal_has_one_http_status():
    assert set(_refusals()) == set(answers.STATUS_OF)


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (errors.NotLoggedIn("Not logged in."), 401, {"www-authenticate": "Bearer"}),
        (errors.WrongCredentials("Wrong email or password."), 401, {}),
        (errors.Forbidden("Outside your namespace."), 403, {}),
        (errors.NotFound("No job 3."), 404, {}),
        (errors.Conflict("Already running."), 409, {}),
        (errors.Invalid("Not a tag."), 422, {}),
        (errors.TooManyAttempts("Too many.", retry_after=7), 429, {"retry-after": "7"}),
        (errors.TooManyAttempts("Too many."), 429, {}),
        (ContestkitError("levels.csv is missing."), 503, {}),
        (RequestValidationError([{"loc": ("body", "tag"), "msg": "Field required"}]), 422, {}),
    ],
)
def test_the_app_maps_each_error_to_its_status(error: Exception, status: int, headers: dict[str, str]):
    answer = answers.error_answer(error)
    assert answer.status_code == status
    for name, value in headers.items():
        assert answer.headers[name] == value
    assert ("retry-after" in answer.headers) == ("retry-after" in headers)
    assert ("www-authenticate" in answer.headers) == ("www-authenticate" in headers)
    body = answer.body.decode()
    assert '"detail"' in body and ("misconfigured" in body) == (status == 503)


def test_operations_refuse_without_http_numbers(offline_contest: OfflineContest):
    contest = offline_contest
    with pytest.raises(errors.Invalid):
        operations.start_job(contest.database, contest.config, contest.team_id, "Not A Tag!")
    with pytest.raises(errors.Forbidden):
        operations.start_job(contest.database, contest.config, contest.team_id, "other.example:5000/x/agent:v1")
    with contest.database.session() as db, pytest.raises(errors.NotFound) as missing:
        operations.get_job(db, contest.team_id, 12345)
    assert not hasattr(missing.value, "status")
    operations.start_job(contest.database, contest.config, contest.team_id, "v1")
    with pytest.raises(errors.Conflict):
        operations.start_job(contest.database, contest.config, contest.team_id, "v2")
