"""Each job attempt's seed, and what a running level reports: the scheduler and its queue in-process
(``queue``: SQLite and PostgreSQL), with the TEST DOUBLE ``tests/server/fake_level_runner.py``
evaluating the levels (it records the seed it was given in its summary.json)."""

from __future__ import annotations

import json
import logging
import shlex
import time
from typing import TYPE_CHECKING

import pytest

from contestkit.errors import UsageError
from contestkit.server.config import load_config
from contestkit.server.queue import operations
from contestkit.server.queue.jobqueue import JobQueue

if TYPE_CHECKING:
    from tests.support.offline import OfflineContest, Queue

ENDED = ("finished", "failed", "cancelled")


def _level_summary(contest: OfflineContest, job_id: int, attempt: int, index: int) -> dict:
    attempt_dir = contest.config.jobs_dir / str(job_id) / f"attempt-{attempt}"
    level_dir = next(p for p in sorted(attempt_dir.iterdir()) if p.is_dir() and p.name.startswith(f"{index:02d}-"))
    return json.loads((level_dir / "summary.json").read_text())


def test_every_attempt_draws_a_fresh_seed_and_records_it(queue: Queue):
    contest = queue.contest
    assert contest.config.seed is None  # `server init` leaves it unset: a fresh seed per attempt
    queue.start()
    first = queue.wait(queue.submit(), ENDED)
    second = queue.wait(queue.submit(), ENDED)
    assert first["status"] == second["status"] == "finished"
    assert isinstance(first["seed"], int) and isinstance(second["seed"], int)
    assert first["seed"] != second["seed"]  # 1 in 2**31 to collide
    for job in (first, second):
        for worker in job["workers"]:
            index = [w["task"] for w in job["workers"]].index(worker["task"])
            assert worker["seed"] == job["seed"] + index
            assert _level_summary(contest, job["id"], 1, index)["seed"] == worker["seed"]  # what the level ran with
        summary_path = contest.config.jobs_dir / str(job["id"]) / "attempt-1" / "summary.json"
        deadline = time.monotonic() + 10
        while not summary_path.exists() and time.monotonic() < deadline:  # written just after the end is committed
            time.sleep(0.05)
        assert json.loads(summary_path.read_text())["seed"] == job["seed"]

    operations.restart_job(contest.database, contest.config, contest.team_id, first["id"])
    queue.runner.wake()
    again = queue.wait(first["id"], ENDED)
    assert again["attempt"] == 2 and again["seed"] != first["seed"]


def test_a_fixed_seed_is_the_hosts_explicit_choice(offline_contest: OfflineContest, queue: Queue):
    offline_contest.config.seed = 1234
    queue.start()
    job = queue.wait(queue.submit(), ENDED)
    assert job["seed"] == 1234
    assert [w["seed"] for w in job["workers"]] == [1234, 1235]


def test_a_resumed_attempt_keeps_its_seed(offline_contest: OfflineContest):
    """A level interrupted by a server restart runs again with the attempt's seed: no second draw."""
    contest = offline_contest
    jobs = JobQueue(contest.database, contest.config, "host-a")
    job_id = operations.start_job(contest.database, contest.config, contest.team_id, "v1").id
    assert "seed" not in contest.job(job_id)  # unknown until the attempt starts
    assert jobs.claim() == job_id
    seed = contest.job(job_id)["seed"]
    assert jobs.recover(set(), startup=True) == [job_id]  # the server died; the job is queued again
    assert contest.job(job_id)["status"] == "queued" and contest.job(job_id)["resumes"] == 1
    assert jobs.claim() == job_id
    assert contest.job(job_id)["seed"] == seed
    assert jobs.claimed(job_id).seed == seed


def test_server_yaml_seed_unset_null_or_fixed(offline_contest: OfflineContest):
    path = offline_contest.config.config_path
    text = path.read_text()
    assert "seed: null" in text  # what `server init` writes now
    path.write_text(text.replace("seed: null", "seed: 0"))  # a data directory made before: fixed, as it was
    assert load_config(offline_contest.data_dir).seed == 0
    path.write_text(text.replace("seed: null\n", ""))
    assert load_config(offline_contest.data_dir).seed is None
    path.write_text(text.replace("seed: null", "seed: -1"))
    with pytest.raises(UsageError, match="seed must be"):
        load_config(offline_contest.data_dir)


def test_a_running_level_reports_its_running_mean(queue: Queue, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CK_FAKE_SLOW_SECONDS", "6")
    queue.start()
    job_id = queue.submit("score-5-slow")
    deadline = time.monotonic() + 20
    worker: dict = {}
    while time.monotonic() < deadline:
        worker = queue.contest.job(job_id)["workers"][0]
        if worker.get("state") == "running" and worker.get("episodes"):
            break
        time.sleep(0.05)
    assert worker.get("state") == "running" and worker.get("episodes"), worker
    rewards = [5 + i % 3 for i in range(worker["episodes"])]  # the fake game's episodes (see there)
    assert worker["mean_episode_reward"] == pytest.approx(sum(rewards) / len(rewards))
    assert "score" not in worker
    operations.kill_job(queue.contest.database, queue.contest.team_id, job_id)
    queue.wait(job_id, ENDED)


def _events(caplog: pytest.LogCaptureFixture, job_id: int) -> list[dict[str, str]]:
    """The server log's event lines of one job, parsed as logfmt (shell-style quoting)."""
    parsed = []
    for record in caplog.records:
        if record.name != "contestkit.server.events":
            continue
        fields = dict(part.split("=", 1) for part in shlex.split(record.getMessage()))
        if fields.get("job") == str(job_id):
            parsed.append(fields)
    return parsed


def test_job_and_level_events_are_logged_as_structured_lines(
    offline_contest: OfflineContest, queue: Queue, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="contestkit.server.events")
    (offline_contest.data_dir / "levels.csv").write_text("game,state\nFake,Level1\nFake,Crash\n")
    queue.start()
    job_id = queue.submit("score-7")
    done = queue.wait(job_id, ENDED)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e["event"] == "job.failed" for e in _events(caplog, job_id)):
        time.sleep(0.05)
    events = _events(caplog, job_id)
    names = [e["event"] for e in events]
    assert names[:2] == ["job.queued", "job.started"] and names[-1] == "job.failed", names
    assert sorted(names[2:-1]) == ["level.failed", "level.finished", "level.started", "level.started"]
    started = events[1]
    assert started["seed"] == str(done["seed"]) and started["attempt"] == "1" and started["team"]
    finished = next(e for e in events if e["event"] == "level.finished")
    assert (finished["task"], float(finished["score"]), finished["episodes"]) == ("Fake/Level1", 8.0, "30")
    failed = next(e for e in events if e["event"] == "level.failed")
    assert failed["task"] == "Fake/Crash" and "crashed on purpose" in failed["reason"]
    assert events[-1]["reason"] == done["error"]

    # A job whose server died is recovered: one line says so.
    jobs = JobQueue(offline_contest.database, offline_contest.config, "host-b")
    queue.runner.stop(timeout=10)
    (offline_contest.data_dir / "levels.csv").write_text("game,state\nFake,Level1\n")
    other = operations.start_job(offline_contest.database, offline_contest.config, offline_contest.team_id, "v2").id
    assert jobs.claim() == other and jobs.recover(set(), startup=True) == [other]
    assert [e["event"] for e in _events(caplog, other)] == ["job.queued", "job.started", "job.recovered"]
    assert all(r.getMessage().startswith("event=") for r in caplog.records if r.name == "contestkit.server.events")
