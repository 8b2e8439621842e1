"""The contest commands as users type them (``python -m contestkit ...``) against a real server.

Also checks that the 2018 ``retro-contest`` client's calls work unchanged against this server.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from tests.conftest import Contest

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    return make_module_contest(LEVELS, extra_config={"parallel_jobs": 4})


class User:
    """A contestant with their own config directory, typing commands."""

    def __init__(self, contest: Contest, home: Path, cli: Any, base_env: Any, unique_team: Any) -> None:
        self.contest = contest
        self.cli = cli
        self.name, self.email = unique_team("cli")
        contest.add_team(self.name, self.email)
        self.env = base_env(
            XDG_CONFIG_HOME=str(home / "xdg"), DOCKER_CONFIG=str(home / "docker"), CONTESTKIT_POLL_SECONDS="0.1"
        )
        self.config = home / "xdg" / "contestkit"

    def run(self, *args: str, input: str | None = None) -> Any:
        return self.cli(*args, env=self.env, input=input)

    def login(self) -> None:
        result = self.run(
            "login", "--server", self.contest.url, "--email", self.email, "--password-stdin",
            input=self.contest.password + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def http(self) -> requests.Session:
        return self.contest.session(self.email)


@pytest.fixture
def make_user(contest, cli, base_env, unique_team):  # type: ignore[no-untyped-def]
    """``make_user(home)``: a contestant of ``contest`` whose config lives under ``home``."""
    return lambda home: User(contest, home, cli, base_env, unique_team)


def _is_sentence(stderr: str) -> None:
    assert stderr.startswith("error: "), stderr
    assert "Traceback" not in stderr and "None" not in stderr


def test_login_refuses_a_wrong_password_and_keeps_the_session_private(contest, tmp_path, make_user):
    user = make_user(tmp_path)
    wrong = user.run("login", "--server", contest.url, "--email", user.email, "--password-stdin", input="nope nope\n")
    assert wrong.returncode == 1
    _is_sentence(wrong.stderr)
    assert "HTTP 401" in wrong.stderr and "Wrong email or password" in wrong.stderr
    assert not (user.config / "session.json").exists()

    user.login()
    session_file = user.config / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(user.config.stat().st_mode) == 0o700
    shown = user.run("registry", "show", "--json")
    assert json.loads(shown.stdout)["url"] == f"127.0.0.1:5000/{user.name}"
    assert "password" not in json.loads(shown.stdout)
    assert stat.S_IMODE((user.config / "registry-credentials.json").stat().st_mode) == 0o600

    cookie = json.loads(session_file.read_text())["cookies"]
    assert user.run("logout").returncode == 0
    assert not session_file.exists()
    assert requests.get(contest.url + "/rest/user", cookies=cookie).status_code == 401  # ended on the server
    after = user.run("jobs")
    assert after.returncode == 1 and "Not logged in" in after.stderr


def test_jobs_commands(contest, tmp_path, make_user):
    user = make_user(tmp_path)
    user.login()
    none_yet = user.run("jobs")
    assert none_yet.returncode == 2 and "no job yet" in none_yet.stderr
    _is_sentence(none_yet.stderr)

    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-30"}).json()
    watched = user.run("jobs", "--watch")
    assert watched.returncode == 0, watched.stderr
    assert f"Job {job['id']}: finished, score 31.00" in watched.stdout
    assert "Fake/Level1" in watched.stdout and "Fake/Level2" in watched.stdout

    shown = json.loads(user.run("jobs", str(job["id"]), "--json").stdout)
    assert shown["status"] == "finished" and shown["score"] == 31.0 and len(shown["workers"]) == 2
    listed = json.loads(user.run("jobs", "--all", "--json").stdout)
    assert [j["id"] for j in listed] == [job["id"]]

    unconfirmed = user.run("jobs", "restart", str(job["id"]))
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    restarted = user.run("jobs", "restart", str(job["id"]), "--yes")
    assert restarted.returncode == 0 and "attempt 2" in restarted.stdout
    contest.wait_job(user.http(), job["id"])
    slow = user.http().post(contest.url + "/rest/job/start", json={"tag": "v2-slow"}).json()
    cancelled = user.run("jobs", "cancel", "--yes", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["id"] == slow["id"]
    nothing = user.run("jobs", "cancel", "--yes")
    assert nothing.returncode == 2 and "no queued or running job" in nothing.stderr

    help_text = user.run("jobs", "--help").stdout
    assert "cancel" in help_text and "restart" in help_text


def test_another_team_cannot_read_or_cancel_a_job_from_the_cli(contest, tmp_path, make_user):
    owner = make_user(tmp_path / "owner")
    other = make_user(tmp_path / "other")
    owner.login()
    other.login()
    job = owner.http().post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    read = other.run("jobs", str(job["id"]))
    assert read.returncode == 2 and f"no job {job['id']}" in read.stderr
    cancel = other.run("jobs", "cancel", str(job["id"]), "--yes")
    assert cancel.returncode == 2
    _is_sentence(cancel.stderr)
    assert owner.http().get(f"{contest.url}/rest/job/status/{job['id']}").json()["status"] in ("queued", "running")
    assert owner.run("jobs", "cancel", str(job["id"]), "--yes").returncode == 0


def test_leaderboard_command(contest, tmp_path, free_port, make_user):
    user = make_user(tmp_path)
    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-5000"}).json()
    contest.wait_job(user.http(), job["id"])
    board = json.loads(user.run("leaderboard", "--server", contest.url, "--json").stdout)
    assert board["start"] == 1 and board["leaderboard"][0] == {
        "name": user.name,
        "score": 5001.0,
        "job": job["id"],
        "finished": board["leaderboard"][0]["finished"],
    }
    table = user.run("leaderboard", "--server", contest.url).stdout
    assert user.name in table and "5001.00" in table
    down = user.run("leaderboard", "--server", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "could not reach the contest server" in down.stderr
    _is_sentence(down.stderr)
    nowhere = user.run("leaderboard")
    assert nowhere.returncode == 2 and "--server" in nowhere.stderr


def test_the_2018_client_works_unchanged(contest, unique_team, password):
    """The calls of retro_contest/rest.py (2018), made the way it made them."""
    name, email = unique_team("retro")
    contest.add_team(name, email)
    server = contest.url
    r = requests.post(server + "/rest/login", json={"email": email, "password": password})
    assert r.status_code // 100 == 2
    cookies = dict(r.cookies)  # what it saved in ~/.config/retro-contest.yml
    r = requests.get(server + "/rest/user", cookies=cookies)
    assert r.status_code == 200 and "cr" in r.json()
    cr = r.json()["cr"]
    assert {"url", "username", "password"} <= set(cr)
    # `retro-contest job submit -t simple-agent:v1` pushed cr['url'] + '/' + tag, then started the job:
    r = requests.post(server + "/rest/job/start", json={"tag": "simple-agent:score-7"}, cookies=cookies)
    assert r.status_code // 100 == 2
    assert r.json()["image"] == cr["url"] + "/simple-agent:score-7"
    r = requests.get(server + "/rest/job/status", cookies=cookies)
    job = r.json()
    for _ in range(300):
        job = requests.get(f"{server}/rest/job/status/{job['id']}", cookies=cookies).json()
        if job["status"] == "finished":
            break
        time.sleep(0.05)
    assert "score" in job
    for worker in job["workers"]:
        assert {"task", "state"} <= set(worker)
        if "progress" in worker:
            assert 0 <= worker["progress"] * 100 <= 100
    jobs = requests.get(server + "/rest/job/status/all", cookies=cookies).json()
    assert isinstance(jobs, list) and jobs[0]["id"] == job["id"]
    assert requests.post(server + "/rest/job/kill", cookies=cookies).status_code == 404  # "No job found"
    assert requests.post(server + "/rest/job/restart", cookies=cookies).status_code // 100 == 2
    assert requests.post(server + "/rest/job/kill", cookies=cookies).status_code // 100 == 2
    info = requests.get(server + "/rest/leaderboard").json()
    assert isinstance(info.get("leaderboard"), list) and info.get("start", 1) == 1
    for score in info["leaderboard"]:
        assert {"name", "score"} <= set(score)
