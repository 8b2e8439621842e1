"""The host's controls: ``contestkit server teams|jobs|actions`` and the admin API (issue 15).

The operations run in-process on both databases (``offline_contest``); the commands as users run
them; the admin API against a real server process, where a team's token must be refused on every
admin route. Levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py``.
"""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select

from contestkit.server.contest import hosting, leaderboards, teams
from contestkit.server.errors import Conflict, NotFound
from contestkit.server.queue import operations
from contestkit.server.storage.db import AdminAction, AuthToken, Job, Team

ACTOR = "cli:tester"


def _team(contest, ref: str = "alpha@example.org") -> Team:
    with contest.database.session() as db:
        return teams.find_team(db, ref)


def test_a_disabled_team_keeps_its_data_and_loses_its_tokens_and_an_enabled_one_submits_again(offline_contest):
    contest = offline_contest
    job_id = contest.finished_job(score=7.0)
    with contest.database.session() as db:
        db.add(AuthToken(team_id=contest.team_id, kind="api", token_hash="x" * 64))
    with contest.database.session() as db:
        document = teams.set_disabled(db, ACTOR, "alpha", True)
    assert document["disabled"] is True
    with contest.database.session() as db:
        assert db.scalars(select(AuthToken).where(AuthToken.team_id == contest.team_id)).all() == []
        assert db.get(Job, job_id).score == 7.0  # its data stays
        assert [row["name"] for row in leaderboards.public_board(db, contest.config)["leaderboard"]] == ["alpha"]
    with contest.database.session() as db:
        teams.set_disabled(db, ACTOR, str(contest.team_id), False)
    assert operations.start_job(contest.database, contest.config, contest.team_id, "v2").status == "queued"
    with contest.database.session() as db:
        log = hosting.actions(db)
    assert [(r["actor"], r["action"], r["target"]) for r in log] == [
        (ACTOR, "team.enable", "alpha@example.org"),
        (ACTOR, "team.disable", "alpha@example.org"),
    ]


def test_rename_reset_password_and_unknown_teams(offline_contest):
    contest = offline_contest
    from contestkit.server.contest.teams import add_team

    add_team(contest.data_dir, name="beta", email="beta@example.org", password="a long password")
    with contest.database.session() as db:
        teams.rename(db, ACTOR, "alpha@example.org", "Alpha Prime")
    assert _team(contest).name == "Alpha Prime"
    with contest.database.session() as db, pytest.raises(Conflict, match="'beta' already exists"):
        teams.rename(db, ACTOR, "Alpha Prime", "beta")
    before = _team(contest)
    with contest.database.session() as db:
        teams.reset_password(db, ACTOR, "Alpha Prime", "another long password")
    after = _team(contest)
    assert after.password_hash != before.password_hash
    assert after.registry_generation == before.registry_generation + 1
    with contest.database.session() as db, pytest.raises(NotFound, match="No team has the email, name or id 'nobody'"):
        teams.set_disabled(db, ACTOR, "nobody", True)


def test_remove_keeps_the_jobs_for_the_record_and_purge_deletes_them(offline_contest):
    contest = offline_contest
    from contestkit.server.contest.teams import add_team

    job_id = contest.finished_job(score=3.0)
    (contest.config.jobs_dir / str(job_id)).mkdir(parents=True, exist_ok=True)
    with contest.database.session() as db:
        teams.remove(db, contest.config, ACTOR, "alpha@example.org")
    with contest.database.session() as db:
        assert db.get(Job, job_id) is not None
        assert leaderboards.public_board(db, contest.config)["leaderboard"] == []  # hidden
        assert [t["name"] for t in teams.list_teams(db)] == []
        assert [t["removed"] for t in teams.list_teams(db, include_removed=True)] == [True]
    # Its email is free for a new account.
    add_team(contest.data_dir, name="alpha again", email="alpha@example.org", password="a long password")

    add_team(contest.data_dir, name="gamma", email="gamma@example.org", password="a long password")
    gamma = _team(contest, "gamma")
    with contest.database.session() as db:
        db.add(Job(team_id=gamma.id, tag="v", image="i", status="finished", timestep_limit=1, wallclock_limit=1))
    with contest.database.session() as db:
        gamma_job = db.scalar(select(Job.id).where(Job.team_id == gamma.id))
    (contest.config.jobs_dir / str(gamma_job)).mkdir(parents=True, exist_ok=True)
    with contest.database.session() as db:
        teams.remove(db, contest.config, ACTOR, "gamma", purge=True)
    with contest.database.session() as db:
        assert db.get(Job, gamma_job) is None and db.get(Team, gamma.id) is None
        actions = [a.action for a in db.scalars(select(AdminAction).order_by(AdminAction.id))]
    assert not (contest.config.jobs_dir / str(gamma_job)).exists()
    assert actions == ["team.remove", "team.purge"]


def test_a_team_with_a_running_job_is_not_removed(offline_contest):
    contest = offline_contest
    job = operations.start_job(contest.database, contest.config, contest.team_id, "v1")
    with contest.database.session() as db, pytest.raises(Conflict, match=f"job {job.id} queued or running"):
        teams.remove(db, contest.config, ACTOR, "alpha")


def test_host_cancels_restarts_and_reruns_a_level_of_any_job(offline_contest):
    contest = offline_contest
    queued = operations.start_job(contest.database, contest.config, contest.team_id, "v1")
    with contest.database.session() as db:
        assert [j["id"] for j in hosting.list_jobs(db)] == [queued.id]
        hosting.cancel_job(db, ACTOR, queued.id)
    assert contest.job(queued.id)["status"] == "cancelled"
    with contest.database.session() as db, pytest.raises(Conflict, match="already cancelled"):
        hosting.cancel_job(db, ACTOR, queued.id)
    with contest.database.session() as db:
        assert hosting.list_jobs(db) == []
        assert [j["team"] for j in hosting.list_jobs(db, all_jobs=True)] == ["alpha"]
        hosting.restart_job(db, contest.config, ACTOR, queued.id)
    restarted = contest.job(queued.id)
    assert restarted["status"] == "queued" and restarted["attempt"] == 2
    with contest.database.session() as db:
        hosting.cancel_job(db, ACTOR, queued.id)

    finished = contest.finished_job(score=5.0)
    with contest.database.session() as db:
        hosting.rerun_level(db, ACTOR, finished, "Fake/Level2")
    document = contest.job(finished)
    assert document["status"] == "queued" and "score" not in document
    assert [w["state"] for w in document["workers"]] == ["finished", "pending"]
    with contest.database.session() as db, pytest.raises(NotFound, match="no level 'Nope/X'"):
        hosting.rerun_level(db, ACTOR, finished, "Nope/X")
    with contest.database.session() as db:
        assert [a["action"] for a in hosting.actions(db)] == [
            "job.rerun-level",
            "job.cancel",
            "job.restart",
            "job.cancel",
        ]


def test_job_ids_no_job_can_have_are_not_found_for_every_host_action(offline_contest):
    """The probe: rerun-level with job id 9223372036854775808 was a 500 (OverflowError), where cancel
    and restart said 404."""
    contest = offline_contest
    for job_id in (0, -1, 2**31, 2**63, 2**64):
        with contest.database.session() as db:
            with pytest.raises(NotFound, match=f"There is no job {job_id}"):
                hosting.rerun_level(db, "host", job_id, "0")
            with pytest.raises(NotFound, match=f"There is no job {job_id}"):
                hosting.cancel_job(db, "host", job_id)
            with pytest.raises(NotFound, match=f"There is no job {job_id}"):
                hosting.restart_job(db, contest.config, "host", job_id)


def test_the_commands_as_the_host_types_them(offline_contest, cli):
    contest = offline_contest
    data = ["--data-dir", str(contest.data_dir)]
    job_id = contest.finished_job(score=4.0)
    listed = cli("server", "teams", "list", "--json", *data)
    assert listed.returncode == 0, listed.stderr
    assert [t["email"] for t in json.loads(listed.stdout)["teams"]] == ["alpha@example.org"]
    assert cli("server", "teams", "disable", "alpha", *data).returncode == 0
    assert json.loads(cli("server", "teams", "list", "--json", *data).stdout)["teams"][0]["disabled"] is True
    assert cli("server", "teams", "enable", "alpha", *data).returncode == 0
    renamed = cli("server", "teams", "rename", "alpha", "Alpha Two", "--json", *data)
    assert json.loads(renamed.stdout)["name"] == "Alpha Two"
    reset = cli("server", "teams", "reset-password", "Alpha Two", "--password-stdin", *data, input="new long pw!\n")
    assert reset.returncode == 0, reset.stderr
    refused = cli("server", "teams", "remove", "Alpha Two", *data)
    assert refused.returncode != 0 and "pass --yes" in refused.stderr and "Traceback" not in refused.stderr
    jobs = json.loads(cli("server", "jobs", "--all", "--json", *data).stdout)["jobs"]
    assert [(j["id"], j["team"], j["phase"]) for j in jobs] == [(job_id, "Alpha Two", "leaderboard")]
    assert cli("server", "jobs", "rerun-level", str(job_id), "0", *data).returncode == 0
    assert cli("server", "jobs", "cancel", str(job_id), *data).returncode == 0
    missing = cli("server", "jobs", "restart", "999", *data)
    assert missing.returncode != 0 and "There is no job 999" in missing.stderr
    assert cli("server", "teams", "remove", "Alpha Two", "--yes", *data).returncode == 0
    log = json.loads(cli("server", "actions", "--json", *data).stdout)["actions"]
    assert [a["action"] for a in log] == [
        "team.remove",
        "job.cancel",
        "job.rerun-level",
        "team.reset-password",
        "team.rename",
        "team.enable",
        "team.disable",
    ]
    assert all(a["actor"].startswith("cli:") for a in log)


ADMIN = "host@example.org"


@pytest.fixture(scope="module")
def contest(make_module_contest):
    return make_module_contest([("Fake", "Level1")], extra_config={"admins": [ADMIN]})


def _admin_routes(data_dir) -> list[tuple[str, str]]:
    from contestkit.server.app import create_app

    app = create_app(data_dir, start_scheduler=False)
    routes = []
    for path, methods in app.openapi()["paths"].items():  # every route the API describes
        if path.startswith("/rest/admin"):
            for method in methods:
                routes.append((method.upper(), path.replace("{ref}", "1").replace("{job_id}", "1")))
    return routes


def test_a_team_token_is_refused_on_every_admin_route(contest):
    _name, team = contest.team("plain")
    token = team.post(contest.url + "/rest/token", json={"name": "script"}).json()["token"]
    routes = _admin_routes(contest.data_dir)
    assert len(routes) >= 9
    bodies = {"rename": {"name": "x"}, "reset-password": {"password": "long password"}, "rerun-level": {"level": "0"}}
    for method, path in routes:
        body = next((b for key, b in bodies.items() if path.endswith(key)), None)
        for http in (team, requests.Session()):
            headers = {"Authorization": f"Bearer {token}"} if http is not team else {}
            answer = http.request(method, contest.url + path, json=body, headers=headers)
            assert answer.status_code == 403, (method, path, answer.text)
            assert "not one of the contest's admins" in answer.json()["detail"]
        anonymous = requests.request(method, contest.url + path, json=body)
        assert anonymous.status_code == 401, (method, path)


def test_the_admin_api_lists_and_controls_every_team_and_records_who(contest):
    contest.add_team("The hosts", ADMIN)
    host = contest.session(ADMIN)
    name, team = contest.team("victim")
    teams = host.get(contest.url + "/rest/admin/teams").json()
    victim = next(t for t in teams if t["namespace"] == name)
    job = team.post(contest.url + "/rest/job/start", json={"tag": "v1"}).json()
    contest.wait_job(team, job["id"])
    listed = host.get(contest.url + "/rest/admin/jobs", params={"all": "true"}).json()
    assert any(j["id"] == job["id"] and j["team"] == victim["name"] for j in listed)

    assert host.post(f"{contest.url}/rest/admin/teams/{victim['email']}/disable").status_code == 200
    refused = team.get(contest.url + "/rest/job/status")
    assert refused.status_code in (401, 403)
    login = requests.post(contest.url + "/rest/login", json={"email": victim["email"], "password": contest.password})
    assert login.status_code == 403 and "disabled by the organisers" in login.json()["detail"]
    assert host.post(f"{contest.url}/rest/admin/teams/{victim['email']}/enable").status_code == 200
    again = contest.session(victim["email"])
    assert again.get(contest.url + "/rest/job/status").json()["id"] == job["id"]
    rerun = host.post(f"{contest.url}/rest/admin/jobs/{job['id']}/rerun-level", json={"level": "Fake/Level1"})
    assert rerun.status_code == 200, rerun.text
    assert contest.wait_job(again, job["id"])["status"] == "finished"
    log = host.get(contest.url + "/rest/admin/actions").json()
    assert [(a["actor"], a["action"]) for a in log[:3]] == [
        (ADMIN, "job.rerun-level"),
        (ADMIN, "team.enable"),
        (ADMIN, "team.disable"),
    ]
