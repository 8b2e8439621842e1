"""The same server against a real PostgreSQL (a throwaway cluster started by the test run).

Run them on their own with ``pytest -m postgres``; they skip, loudly, where PostgreSQL or psycopg
is missing. The tests that hold on both databases take the ``database_url`` fixture (SQLite and
PostgreSQL) and live with their area (``test_migrations.py``, ``test_jobs.py``, ``test_queue_faults.py``,
``test_recovery.py``);
these are the ones about the server on PostgreSQL only.
"""

from __future__ import annotations

import pytest
import requests

from contestkit.errors import ContestkitError
from contestkit.server.storage.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LEVELS = [("Fake", "Level1"), ("Fake", "Crash"), ("Fake", "Level3")]
CLEAN = [("Fake", "Level1"), ("Fake", "Level2"), ("Fake", "Level3")]


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """Here every contest is on PostgreSQL (``offline_contest`` takes this instead of both databases)."""
    return postgres_url


def test_jobs_isolation_and_leaderboard_on_postgres(make_contest, postgres_url):
    contest = make_contest(CLEAN, database_url=postgres_url)
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
    assert done["score"] == pytest.approx(61.0)
    board = requests.get(contest.url + "/rest/leaderboard").json()
    assert [(r["name"], r["score"]) for r in board["leaderboard"]] == [(alpha_ns, pytest.approx(61.0))]

    # A job with a crashed level fails and is not ranked (the rule of tests/server/test_jobs.py, here
    # on PostgreSQL): the leaderboard keeps the clean job.
    (contest.data_dir / "levels.csv").write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in LEVELS))
    second = alpha.post(contest.url + "/rest/job/start", json={"tag": "score-90"}).json()
    crashed = contest.wait_job(alpha, second["id"])
    assert crashed["status"] == "failed" and "score" not in crashed
    board = requests.get(contest.url + "/rest/leaderboard").json()
    assert [(r["name"], r["job"]) for r in board["leaderboard"]] == [(alpha_ns, job["id"])]


def test_ids_beyond_integer_columns_and_overlong_tags_on_postgres(make_contest, postgres_url):
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


def test_a_refused_team_leaves_nothing_and_shows_no_secret_on_postgres(offline_contest, postgres_url, password,
                                                                      monkeypatch):  # fmt: skip
    from sqlalchemy import select

    from contestkit.server.contest import teams
    from contestkit.server.deployment import admin
    from contestkit.server.storage.db import Team

    contest = offline_contest
    contest.database.dispose()
    monkeypatch.setattr(admin.secrets, "token_urlsafe", lambda _n: "registry-secret-1234")
    # Past the up-front check, PostgreSQL itself refuses the 262-character email (varchar(254)).
    monkeypatch.setattr(teams, "EMAIL_MAX", 1000, raising=False)
    with pytest.raises(ContestkitError) as err:
        teams.add_team(contest.data_dir, name="beta", email="b" * 250 + "@example.org", password=password)
    message = str(err.value)
    assert message.startswith("The database refused the new team (StringDataRightTruncation), so nothing was added")
    assert "registry-secret-1234" not in message and "argon2" not in message and password not in message
    assert not (contest.data_dir / "registry" / "htpasswd").exists()  # the team row is the registry account
    database = Database(postgres_url)
    with database.session() as session:
        assert session.scalars(select(Team.name)).all() == ["alpha"]
    database.dispose()
