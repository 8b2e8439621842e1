"""Crash safety: a server killed mid-job loses nothing finished and never leaves a job "running".

The server is a real process killed with SIGKILL (a crash) or SIGTERM (a stop); levels are run by
the TEST DOUBLE ``tests/server/fake_level_runner.py``, which logs every level it starts so the
tests can tell which levels ran again.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.contest import Contest

LEVELS = [("Fake", "Level1"), ("Fake", "Level2"), ("Fake", "Level3")]

pytestmark = pytest.mark.slow


@pytest.fixture
def start_contest(tmp_path: Path, base_env, init_contest, server_process, contest_of):  # type: ignore[no-untyped-def]
    """``start_contest(tmp_path, **init_options)`` -> (contest, the test double's run log, the server's env)."""

    def start(tmp_path: Path, **options) -> tuple[Contest, Path, dict[str, str]]:  # type: ignore[no-untyped-def]
        run_log = tmp_path / "runs.log"
        env = base_env(CK_FAKE_LEVEL_SECONDS="1.0", CK_FAKE_RUN_LOG=str(run_log))
        data_dir = init_contest(tmp_path, LEVELS, **options)
        server = server_process(data_dir, env=env).start()
        return contest_of(data_dir, server, LEVELS), run_log, env

    return start


def _wait_for_second_level(contest: Contest, http, job_id: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = http.get(f"{contest.url}/rest/job/status/{job_id}").json()["workers"]
        if workers[0]["state"] == "finished" and workers[1]["state"] == "running":
            return
        time.sleep(0.05)
    raise AssertionError(f"level 2 never started: {workers}")


def _db_status(data_dir: Path, job_id: int) -> str:
    """The job's status as stored, read from whichever database the contest uses."""
    from sqlalchemy import text

    from contestkit.server.config import load_config
    from contestkit.server.storage.db import Database

    database = Database(load_config(data_dir).database())
    try:
        with database.engine.connect() as conn:
            return str(conn.execute(text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one())
    finally:
        database.dispose()


def test_a_killed_server_resumes_the_job_and_keeps_finished_levels(
    tmp_path, start_contest, contest_of, server_process, database_url
):
    contest, run_log, env = start_contest(tmp_path, database_url=database_url)
    _, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-20"}).json()
    _wait_for_second_level(contest, http, job["id"])
    first_score = http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["workers"][0]["score"]

    contest.server.kill()  # SIGKILL: no chance to clean up
    assert _db_status(contest.data_dir, job["id"]) == "running"

    restarted = contest_of(contest.data_dir, server_process(contest.data_dir, env=env).start(), LEVELS)
    done = restarted.wait_job(http, job["id"], timeout=60)  # the session survived the restart too
    assert done["status"] == "finished", done
    assert done["resumes"] == 1
    assert [w["score"] for w in done["workers"]] == [first_score, 21.0, 21.0]
    assert all("error" not in w for w in done["workers"])
    runs = run_log.read_text().splitlines()
    # Level 1 had finished: it is not run again. Level 2 was interrupted: it runs again from scratch.
    assert runs.count(f"{job['id']} 0 Level1") == 1
    assert runs.count(f"{job['id']} 1 Level2") == 2
    assert runs.count(f"{job['id']} 2 Level3") == 1
    attempt = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    assert (attempt / "01-Fake-Level2.interrupted-1" / "monitor.csv").is_file()  # the partial run is kept aside
    assert (attempt / "01-Fake-Level2" / "summary.json").is_file()
    restarted.server.kill()


def test_a_job_interrupted_too_often_fails_with_the_reason(tmp_path, start_contest, contest_of, server_process):
    contest, _, env = start_contest(tmp_path, extra_config={"max_resumes": 0})
    _, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-20"}).json()
    _wait_for_second_level(contest, http, job["id"])
    contest.server.kill()

    restarted = contest_of(contest.data_dir, server_process(contest.data_dir, env=env).start(), LEVELS)
    done = http.get(f"{restarted.url}/rest/job/status/{job['id']}").json()
    assert done["status"] == "failed"
    assert "interrupted by a server restart once" in done["error"]
    assert "contestkit jobs restart" in done["error"]
    states = [w["state"] for w in done["workers"]]
    assert states == ["finished", "failed", "failed"]
    assert done["workers"][1]["error"] == "interrupted by a server restart"
    # The team can run it again, and it is not stuck as "running" anywhere.
    assert http.post(f"{restarted.url}/rest/job/restart/{job['id']}").status_code == 200
    assert restarted.wait_job(http, job["id"], timeout=60)["status"] == "finished"
    restarted.server.kill()


def test_a_stopped_server_requeues_its_job_without_counting_a_resume(
    tmp_path, start_contest, contest_of, server_process
):
    contest, run_log, env = start_contest(tmp_path)
    _, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-5"}).json()
    _wait_for_second_level(contest, http, job["id"])
    # SIGTERM: a clean shutdown (uvicorn re-raises the signal once it has shut down, hence -15)
    assert contest.server.stop(timeout=30) in (0, -15)
    assert _db_status(contest.data_dir, job["id"]) == "queued"

    restarted = contest_of(contest.data_dir, server_process(contest.data_dir, env=env).start(), LEVELS)
    done = restarted.wait_job(http, job["id"], timeout=60)
    assert done["status"] == "finished" and "resumes" not in done
    assert run_log.read_text().splitlines().count(f"{job['id']} 0 Level1") == 1
    restarted.server.kill()


def test_a_job_left_by_another_server_is_taken_over_when_its_heartbeat_stops(
    tmp_path, start_contest, contest_of, server_process
):
    contest, _, env = start_contest(tmp_path, extra_config={"heartbeat_timeout": 2.0, "heartbeat_seconds": 0.5})
    _, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-5"}).json()
    _wait_for_second_level(contest, http, job["id"])
    contest.server.kill()
    # Pretend another host (sharing a PostgreSQL database) runs it and has just sent a heartbeat. The
    # heartbeat is stamped 15 s ahead so that it is still fresh once the restarted server is up, even
    # on a loaded machine where starting it takes several seconds (3 s ahead made this test flaky).
    with sqlite3.connect(contest.data_dir / "contest.db") as db:
        db.execute(
            "UPDATE jobs SET runner = 'elsewhere:/srv/contest', heartbeat_at = ? WHERE id = ?",
            (time.time() + 15, job["id"]),
        )
    restarted = contest_of(contest.data_dir, server_process(contest.data_dir, env=env).start(), LEVELS)
    with sqlite3.connect(contest.data_dir / "contest.db") as db:
        runner = db.execute("SELECT runner FROM jobs WHERE id = ?", (job["id"],)).fetchone()[0]
    assert runner == "elsewhere:/srv/contest"  # a live server's job is left alone...
    done = restarted.wait_job(http, job["id"], timeout=120)  # ...until its heartbeat goes stale
    assert done["status"] == "finished" and done["resumes"] == 1
    restarted.server.kill()


def test_two_servers_cannot_share_a_data_directory(tmp_path, start_contest, server_process):
    contest, _, env = start_contest(tmp_path)
    second = server_process(contest.data_dir, env=env)
    with pytest.raises(RuntimeError, match="Another contest server is already running"):
        second.start(timeout=20)
    contest.server.kill()
