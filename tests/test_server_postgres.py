"""The same server against a real PostgreSQL (a throwaway cluster started by the test run).

Run them on their own with ``pytest -m postgres``; they skip, loudly, where PostgreSQL or psycopg
is missing.
"""

from __future__ import annotations

import time

import pytest
import requests
from server_support import (  # noqa: F401 - fixtures
    LevelsT,
    ServerProcess,
    base_env,
    check_one_active_job_per_team,
    check_schema,
    make_contest,
    postgres_cluster,
    postgres_url,
)
from sqlalchemy import text

from contestkit.errors import ContestkitError
from contestkit.server.db import Database
from contestkit.server.migrations import LATEST, migrate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEVELS: LevelsT = [("Fake", "Level1"), ("Fake", "Crash"), ("Fake", "Level3")]


def test_migrations_on_postgres(postgres_url):  # noqa: F811
    database = Database(postgres_url)
    assert database.engine.dialect.name == "postgresql"
    assert migrate(database) == list(range(1, LATEST + 1))
    assert migrate(database) == []
    check_schema(database)
    check_one_active_job_per_team(database)
    with database.engine.begin() as conn:
        conn.execute(text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)"))
    with pytest.raises(ContestkitError, match="newer than this contestkit"):
        migrate(database)
    database.dispose()


def test_jobs_isolation_and_leaderboard_on_postgres(make_contest, postgres_url):  # noqa: F811
    contest = make_contest(LEVELS, database_url=postgres_url)
    assert not (contest.data_dir / "contest.db").exists()  # really not SQLite
    alpha_ns, alpha = contest.team("alpha")
    _, beta = contest.team("beta")
    assert (
        requests.post(
            contest.url + "/rest/login", json={"email": f"{alpha_ns}@example.org", "password": "wrong password"}
        ).status_code
        == 401
    )
    job = alpha.post(contest.url + "/rest/job/start", json={"tag": "score-60"}).json()
    assert alpha.post(contest.url + "/rest/job/start", json={"tag": "score-60"}).status_code == 409
    assert beta.get(f"{contest.url}/rest/job/status/{job['id']}").status_code == 404
    assert beta.post(f"{contest.url}/rest/job/kill/{job['id']}").status_code == 404
    done = contest.wait_job(alpha, job["id"])
    assert done["status"] == "finished"
    assert done["score"] == pytest.approx((61 + 0 + 61) / 3)
    board = requests.get(contest.url + "/rest/leaderboard").json()
    assert [(r["name"], r["score"]) for r in board["leaderboard"]] == [(alpha_ns, pytest.approx(122 / 3))]


def test_a_killed_server_recovers_its_job_on_postgres(tmp_path, make_contest, postgres_url):  # noqa: F811
    run_log = tmp_path / "runs.log"
    env = base_env(CK_FAKE_LEVEL_SECONDS="1.0", CK_FAKE_RUN_LOG=str(run_log))
    contest = make_contest([("Fake", "Level1"), ("Fake", "Level2")], database_url=postgres_url, env=env)
    _, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-9"}).json()
    deadline = time.monotonic() + 30
    while http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["workers"][1]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    contest.server.kill()
    restarted = ServerProcess(contest.data_dir, env=env).start()
    make_contest.servers.append(restarted)
    contest.server = restarted
    done = contest.wait_job(http, job["id"], timeout=60)
    assert done["status"] == "finished" and done["resumes"] == 1
    assert run_log.read_text().splitlines().count(f"{job['id']} 0 Level1") == 1
