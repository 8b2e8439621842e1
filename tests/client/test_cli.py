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
    from tests.support.contest import Contest

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
    for args in (["jobs"], ["jobs", "--all"], ["jobs", "--watch"]):  # no job yet is not an error, for each
        none_yet = user.run(*args)
        assert none_yet.returncode == 0 and "No jobs yet" in none_yet.stdout, (args, none_yet.stderr)
    assert json.loads(user.run("jobs", "--json").stdout) is None
    assert json.loads(user.run("jobs", "--all", "--json").stdout) == []

    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-30"}).json()
    watched = user.run("jobs", "--watch")
    assert watched.returncode == 0, watched.stderr
    assert f"Job {job['id']}: finished, score 31.00" in watched.stdout
    assert "Fake/Level1" in watched.stdout and "Fake/Level2" in watched.stdout
    # Not a terminal: a line per change, each level's with its episodes and score.
    assert f"job {job['id']} level Fake/Level1: finished, 30 episodes, score 31.00" in watched.stderr
    assert f"job {job['id']}: finished, 2/2 levels done, score 31.00" in watched.stderr

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


def test_jobs_all_pages_through_a_long_history(contest, tmp_path, make_user):
    user = make_user(tmp_path)
    user.login()
    http = user.http()
    ids = []
    for n in range(3):
        job = http.post(contest.url + "/rest/job/start", json={"tag": f"score-{n}"}).json()
        contest.wait_job(http, job["id"])
        ids.append(job["id"])
    newest, middle, oldest = ids[::-1]

    first = json.loads(user.run("jobs", "--all", "--limit", "2", "--json").stdout)
    assert [j["id"] for j in first] == [newest, middle]
    rest = json.loads(user.run("jobs", "--all", "--limit", "2", "--before", str(middle), "--json").stdout)
    assert [j["id"] for j in rest] == [oldest]
    table = user.run("jobs", "--all", "--limit", "2")
    assert f"--limit 2 --before {middle}" in table.stdout, table.stdout  # how to get the next page
    last_page = user.run("jobs", "--all", "--limit", "2", "--before", str(middle))
    assert "--before" not in last_page.stdout  # a short page is the last one

    without_all = user.run("jobs", "--limit", "2")
    assert without_all.returncode == 2 and "add --all" in without_all.stderr
    too_many = user.run("jobs", "--all", "--limit", "5000")
    assert too_many.returncode != 0 and "Traceback" not in too_many.stderr
    assert "limit" in too_many.stderr, too_many.stderr
    assert http.get(contest.url + "/rest/job/status/all", params={"before": 2**40}).json()[0]["id"] == newest


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


def test_a_failed_level_makes_jobs_exit_non_zero(make_contest, tmp_path, cli, base_env, unique_team):
    contest = make_contest([("Fake", "Level1"), ("Fake", "Crash")])
    user = User(contest, tmp_path, cli, base_env, unique_team)
    user.login()
    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-30"}).json()
    watched = user.run("jobs", "--watch")
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert f"Job {job['id']} failed: 1 of 2 levels failed (first Fake/Crash: " in watched.stderr
    assert "crashed on purpose" in watched.stderr and f"jobs logs {job['id']}" in watched.stderr
    assert f"job {job['id']} level Fake/Crash: failed" in watched.stderr
    shown = user.run("jobs", str(job["id"]), "--json")
    assert shown.returncode == 1 and json.loads(shown.stdout)["status"] == "failed"
    assert user.run("jobs").returncode == 1
    assert user.run("jobs", "--all").returncode == 0  # a listing is not about one job


HOSTILE = "\x1b[2J\x1b]52;c;ZXZpbA==\x07\x1b]0;pwned\x07\u202egnp.exe\x9b"  # clear, clipboard, title, RLO, CSI


def test_agent_and_team_text_is_printed_with_its_control_characters_visible(contest, tmp_path, make_user):
    """The probe: a failing agent's stderr tail, shown by `contestkit jobs ID`, printed raw terminal
    escapes (clear screen, OSC 52 clipboard writes, title changes); a team name with U+202E printed
    raw in host tables. Everything the CLI prints from agents or teams now shows them as ``\\x1b``."""
    import sqlite3

    user = make_user(tmp_path)
    user.login()
    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-3"}).json()
    contest.wait_job(user.http(), job["id"])
    # What a failing agent leaves: its stderr tail as the level's error, and its own stdout file.
    with sqlite3.connect(contest.data_dir / "contest.db") as db:
        db.execute("UPDATE workers SET status = 'failed', error = ? WHERE job_id = ? AND idx = 0", (HOSTILE, job["id"]))
        db.execute("UPDATE jobs SET status = 'failed' WHERE id = ?", (job["id"],))
    level = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    (level / "agent-stdout.txt").write_text("step 1\n" + HOSTILE + "\n")

    printed = [user.run("jobs", str(job["id"])), user.run("jobs", "logs", str(job["id"]), "0")]
    for result in printed:
        out = result.stdout + result.stderr
        for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
            assert raw not in out, (raw, out)
        assert "\\x1b]52;c;ZXZpbA==" in out and "\\u202egnp.exe" in out, out
    assert "step 1" in printed[1].stdout

    # A team name written before names were checked (straight into the database), in the host's table.
    with sqlite3.connect(contest.data_dir / "contest.db") as db:
        db.execute("UPDATE teams SET name = ? WHERE email = ?", ("evil\u202eteam\x1b[2J", user.email))
    table = user.run("server", "teams", "list", "--data-dir", str(contest.data_dir))
    assert table.returncode == 0, table.stderr
    assert "\u202e" not in table.stdout and "\x1b" not in table.stdout
    assert "evil\\u202eteam\\x1b[2J" in table.stdout


def test_submit_checks_for_a_running_job_before_pushing(contest, tmp_path, make_user):
    user = make_user(tmp_path)
    user.login()
    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    refused = user.run("submit", "v9", "--wait")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    _is_sentence(refused.stderr)
    assert f"already has job {job['id']}" in refused.stderr and refused.stderr.startswith("error: Nothing was pushed: ")
    assert "Pushing" not in refused.stdout + refused.stderr and "No local image" not in refused.stderr
    assert user.run("jobs", "cancel", "--yes").returncode == 0


def test_jobs_logs_and_download_fetch_a_jobs_results(contest, tmp_path, make_user):
    user = make_user(tmp_path / "owner")
    user.login()
    job = user.http().post(contest.url + "/rest/job/start", json={"tag": "score-3"}).json()
    contest.wait_job(user.http(), job["id"])
    logs = user.run("jobs", "logs", str(job["id"]))
    assert logs.returncode == 0, logs.stderr
    assert "==> 00-Fake-Level1/agent-stdout.txt <==" in logs.stdout
    assert "fake agent playing Fake Level1" in logs.stdout and "fake agent playing Fake Level2" in logs.stdout
    one = user.run("jobs", "logs", str(job["id"]), "Fake/Level2", "--json")
    assert [entry["file"] for entry in json.loads(one.stdout)["logs"]] == ["01-Fake-Level2/agent-stdout.txt"]
    by_number = user.run("jobs", "logs", str(job["id"]), "1").stdout
    assert by_number == user.run("jobs", "logs", str(job["id"]), "Level2").stdout
    unknown = user.run("jobs", "logs", str(job["id"]), "Nope")
    assert unknown.returncode == 2 and "Fake/Level1, Fake/Level2" in unknown.stderr

    # What an agent leaves in its out/ (a checkpoint) is not downloaded unless asked for (--with-out).
    server_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    (server_dir / "00-Fake-Level1" / "out").mkdir(exist_ok=True)
    (server_dir / "00-Fake-Level1" / "out" / "checkpoint.bin").write_bytes(b"\0" * 4096)
    target = tmp_path / "results"
    downloaded = user.run("jobs", "download", str(job["id"]), "--dir", str(target), "--json")
    assert downloaded.returncode == 0, downloaded.stderr
    document = json.loads(downloaded.stdout)
    assert document["attempt"] == 1 and len(document["files"]) >= 9
    assert document["skipped_out"] == 1 and not (target / "00-Fake-Level1" / "out").exists()
    with_out = user.run("jobs", "download", str(job["id"]), "--dir", str(tmp_path / "all"), "--with-out", "--json")
    assert "skipped_out" not in json.loads(with_out.stdout)
    assert (tmp_path / "all" / "00-Fake-Level1" / "out" / "checkpoint.bin").stat().st_size == 4096
    for name in ("monitor.csv", "summary.json", "agent-stdout.txt", "reward-curve.svg"):
        assert (target / "00-Fake-Level1" / name).read_bytes() == (server_dir / "00-Fake-Level1" / name).read_bytes()
    assert not list(target.rglob(".*.part"))

    other = make_user(tmp_path / "other")
    other.login()
    for args in (["jobs", "logs", str(job["id"])], ["jobs", "download", str(job["id"]), "--dir", str(tmp_path / "x")]):
        refused = other.run(*args)
        assert refused.returncode == 2 and f"no job {job['id']}" in refused.stderr
        _is_sentence(refused.stderr)
    assert not (tmp_path / "x").exists()


def test_tokens_create_list_and_revoke(contest, tmp_path, make_user):
    user = make_user(tmp_path)
    user.login()
    created = user.run("tokens", "create", "--name", "ci", "--expires-in-days", "2", "--json")
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert requests.get(contest.url + "/rest/job/status/all", headers=bearer).status_code == 200
    listed = json.loads(user.run("tokens", "list", "--json").stdout)
    assert [(t["id"], t["name"]) for t in listed] == [(token["id"], "ci")]
    assert all("token" not in t for t in listed)
    assert "ci" in user.run("tokens", "list").stdout
    revoked = user.run("tokens", "revoke", str(token["id"]))
    assert revoked.returncode == 0 and f"API token {token['id']} revoked" in revoked.stdout
    assert requests.get(contest.url + "/rest/job/status/all", headers=bearer).status_code == 401
    again = user.run("tokens", "revoke", str(token["id"]))
    assert again.returncode == 2 and f"no API token {token['id']}" in again.stderr
    assert "No API tokens" in user.run("tokens", "list").stdout


def test_a_running_level_shows_its_running_mean():
    from rich.console import Console

    from contestkit.cli.contest_cmd import job_table, watch_lines

    job = {
        "id": 7,
        "status": "running",
        "workers": [
            {"task": "Fake/Level1", "state": "running", "progress": 0.43, "episodes": 63, "mean_episode_reward": 12.5},
            {"task": "Fake/Level2", "state": "pending"},
        ],
    }
    out = Console(record=True, width=100)
    out.print(job_table(job))
    text = out.export_text()
    assert "~12.50" in text and "running mean" in text
    line = dict(watch_lines(job))["level Fake/Level1"]
    assert line == "job 7 level Fake/Level1: running, 40%, 63 episodes, mean so far 12.50"


def test_server_times_print_in_utc_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's job and leaderboard times match the server's phase line (UTC), whatever the local zone."""
    import time

    from contestkit.cli import contest_cmd

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert contest_cmd._when(3600) == "1970-01-01 01:00 UTC"  # 10:00 in Tokyo
        assert contest_cmd._when(None) == "-"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
