"""The same server against a real PostgreSQL (a throwaway cluster started by the test run).

Run them on their own with ``pytest -m postgres``; they skip, loudly, where PostgreSQL or psycopg
is missing.
"""

from __future__ import annotations

import time

import pytest
import requests
from server_support import (  # noqa: F401 - fixtures
    PASSWORD,
    LevelsT,
    ServerProcess,
    base_env,
    check_concurrent_restarts_start_the_job_once,
    check_one_active_job_per_team,
    check_restart_racing_a_submission_is_a_409,
    check_schema,
    make_contest,
    open_offline_contest,
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


@pytest.mark.parametrize(
    "check", [check_concurrent_restarts_start_the_job_once, check_restart_racing_a_submission_is_a_409]
)
def test_restart_races_on_postgres(tmp_path, postgres_url, monkeypatch, check):  # noqa: F811
    contest = open_offline_contest(tmp_path, database_url=postgres_url)
    try:
        check(contest, monkeypatch)
    finally:
        contest.database.dispose()


def test_ids_beyond_integer_columns_and_overlong_tags_on_postgres(make_contest, postgres_url):  # noqa: F811
    contest = make_contest([("Fake", "Level1")], database_url=postgres_url)
    _, http = contest.team("alpha")
    for big in (str(2**31), "99999999999999999999999"):
        for method, path in (
            ("GET", f"/rest/job/status/{big}"),
            ("POST", f"/rest/job/kill/{big}"),
            ("POST", f"/rest/job/restart/{big}"),
            ("DELETE", f"/rest/token/{big}"),
        ):
            answer = http.request(method, contest.url + path)
            assert answer.status_code == 404, (path, answer.text)
    tag = "a" * 200 + ":" + "v" * 100
    refused = http.post(contest.url + "/rest/job/start", json={"tag": tag})
    assert refused.status_code == 422 and "at most 256 characters" in refused.json()["detail"], refused.text
    wrong = http.post(contest.url + "/rest/login", json={"email": "x@example.org", "password": "\ud800"})
    assert wrong.status_code == 401, wrong.text
    assert "Traceback" not in contest.server.log()


def test_a_refused_team_leaves_nothing_and_shows_no_secret_on_postgres(tmp_path, postgres_url, monkeypatch):  # noqa: F811
    from sqlalchemy import select

    from contestkit.server import admin
    from contestkit.server.db import Team

    contest = open_offline_contest(tmp_path, database_url=postgres_url)
    contest.database.dispose()
    monkeypatch.setattr(admin.secrets, "token_urlsafe", lambda _n: "registry-secret-1234")
    # Past the up-front check, PostgreSQL itself refuses the 262-character email (varchar(254)).
    monkeypatch.setattr(admin, "EMAIL_MAX", 1000, raising=False)
    with pytest.raises(ContestkitError) as err:
        admin.add_team(contest.data_dir, name="beta", email="b" * 250 + "@example.org", password=PASSWORD)
    message = str(err.value)
    assert message.startswith("The database refused the new team (StringDataRightTruncation), so nothing was added")
    assert "registry-secret-1234" not in message and "argon2" not in message and PASSWORD not in message
    assert not (contest.data_dir / "registry" / "htpasswd").exists()  # the team row is the registry account
    database = Database(postgres_url)
    with database.session() as session:
        assert session.scalars(select(Team.name)).all() == ["alpha"]
    database.dispose()
