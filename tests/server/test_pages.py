"""The contest's pages over HTTP, against a real server process and its real SQLite database.

What a browser cannot show easily is checked here: status codes, headers, the CSRF and origin rules
of every form, path traversal in downloads, what a team may not see. The browser itself is in
``test_pages_browser.py``. Levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests

from tests.support.commands import subprocess_env
from tests.support.contest import Contest, unique_team
from tests.support.paths import GAME, STATE

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]
ADMIN_EMAIL = "host@example.org"


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    env = subprocess_env(CK_FAKE_SLOW_SECONDS="30")
    return make_module_contest(LEVELS, env=env, extra_config={"parallel_jobs": 4, "admins": [ADMIN_EMAIL]})


def _team(contest: Contest, prefix: str = "team") -> tuple[str, str, requests.Session]:
    name, email = unique_team(prefix)
    contest.add_team(name, email)
    return name, email, contest.session(email)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]*)"', html)
    assert match, html
    return match.group(1)


def _finished_job(contest: Contest, http: requests.Session, tag: str = "score-5") -> dict:
    job = http.post(contest.url + "/rest/job/start", json={"tag": tag}).json()
    done = contest.wait_job(http, job["id"])
    assert done["status"] == "finished", done
    return done


def _running_job(contest: Contest, http: requests.Session) -> dict:
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    return contest.wait_job(http, job["id"], statuses=("running",))


def test_the_leaderboard_shows_each_teams_latest_score_and_levels(contest):
    name, _email, http = _team(contest, "board")
    _finished_job(contest, http, "score-40")
    page = requests.get(contest.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    row = re.search(rf'<tr data-team="{name}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    # rank, team, score, level 1, level 2, last finished, submissions
    assert cells[1] == name and cells[2] == "41.0" and cells[3:5] == ["41.0", "41.0"], cells
    assert cells[6] == "1"
    assert "Fake/Level1" in page.text and "Fake/Level2" in page.text  # the level set
    # It agrees with the API's leaderboard.
    api = {row["name"]: row["score"] for row in requests.get(contest.url + "/rest/leaderboard").json()["leaderboard"]}
    assert api[name] == pytest.approx(41.0)


def test_the_leaderboard_changes_when_a_job_finishes(contest):
    """The page is kept between requests; a finished job must show at once all the same."""
    name, _email, http = _team(contest, "fresh")
    assert name not in requests.get(contest.url + "/").text
    _finished_job(contest, http, "score-7")
    assert f'data-team="{name}"' in requests.get(contest.url + "/").text
    # A second submission counts, and the newer score replaces the older.
    _finished_job(contest, http, "score-70")
    row = re.search(rf'<tr data-team="{name}">(.*?)</tr>', requests.get(contest.url + "/").text, re.S)
    assert row and "71.0" in row.group(1) and re.search(r'<td class="num wide">2</td>', row.group(1)), row


def test_a_level_page_draws_the_distribution_of_scores(contest):
    _name, _email, http = _team(contest, "level")
    _finished_job(contest, http, "score-12")
    page = http.get(contest.url + "/levels/2")  # counted from 1, as the board's L1, L2
    assert page.status_code == 200
    assert "<svg" in page.text and "Fake/Level2" in page.text and "<rect" in page.text
    assert "the red line is you (13.0)" in page.text
    assert requests.get(contest.url + "/levels/3").status_code == 404
    assert requests.get(contest.url + "/levels/0").status_code == 404
    assert requests.get(contest.url + "/levels/x").status_code == 404


def test_pages_send_the_security_headers(contest):
    for path in ("/", "/signin", "/levels/1", "/final", "/rest/leaderboard", "/static/style.css"):
        headers = requests.get(contest.url + path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "same-origin", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
    policy = requests.get(contest.url + "/").headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_signing_in_sets_the_api_session_and_a_wrong_password_is_refused(contest):
    name, email = unique_team("signin")
    contest.add_team(name, email)
    browser = requests.Session()
    form = browser.get(contest.url + "/signin")
    token = _csrf(form.text)
    assert form.cookies["contestkit_csrf"] == token
    wrong = browser.post(
        contest.url + "/signin",
        data={"csrf": token, "email": email, "password": "not it at all"},
        allow_redirects=False,
    )
    assert wrong.status_code == 401 and "Wrong email or password" in wrong.text
    assert "contestkit_session" not in browser.cookies
    right = browser.post(
        contest.url + "/signin",
        data={"csrf": token, "email": email, "password": "correct horse battery", "next": "//evil.example/x"},
        allow_redirects=False,
    )
    assert right.status_code == 303 and right.headers["location"] == "/jobs"  # never off-site
    cookie = right.headers["set-cookie"]
    assert "contestkit_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    # The same session as the API's.
    assert browser.get(contest.url + "/rest/user").json()["name"] == name
    assert name in browser.get(contest.url + "/jobs").text


def test_sign_in_without_the_forms_token_or_from_another_origin_is_refused(contest):
    name, email = unique_team("signcsrf")
    contest.add_team(name, email)
    credentials = {"email": email, "password": "correct horse battery"}
    assert requests.post(contest.url + "/signin", data=credentials, allow_redirects=False).status_code == 403
    browser = requests.Session()
    token = _csrf(browser.get(contest.url + "/signin").text)
    foreign = browser.post(
        contest.url + "/signin",
        data={**credentials, "csrf": token},
        headers={"Origin": "http://127.0.0.1:1"},
        allow_redirects=False,
    )
    assert foreign.status_code == 403 and "contestkit_session" not in browser.cookies


def test_a_team_sees_only_its_own_jobs_and_files(contest):
    _a, _ea, alice = _team(contest, "alice")
    _b, _eb, bob = _team(contest, "bob")
    job = _finished_job(contest, alice)
    mine = alice.get(f"{contest.url}/jobs/{job['id']}")
    assert mine.status_code == 200 and "monitor.csv" in mine.text
    assert alice.get(f"{contest.url}/jobs/{job['id']}/levels/0/monitor.csv").text.startswith("r,l,t")
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/levels/0/monitor.csv", "/jobs/99999999", "/jobs/0",
                 "/jobs/-1", "/jobs/abc", "/jobs/99999999999999999999"):  # fmt: skip
        assert bob.get(contest.url + path).status_code == 404, path
    # Bob's own jobs page does not list Alice's job.
    assert f'href="/jobs/{job["id"]}"' not in bob.get(contest.url + "/jobs").text
    # Not signed in: to the sign-in page, whatever the id (nothing is revealed).
    anonymous = requests.get(f"{contest.url}/jobs/{job['id']}", allow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/signin?next=/jobs/{job['id']}"
    # Bob cannot cancel or restart it either, even with his own valid token.
    token = _csrf(bob.get(contest.url + "/jobs").text)
    for action in ("cancel", "restart"):
        refused = bob.post(f"{contest.url}/jobs/{job['id']}/{action}", data={"csrf": token}, allow_redirects=False)
        assert refused.status_code == 404, action


def test_downloads_cannot_leave_the_levels_results(contest):
    _name, _email, http = _team(contest, "paths")
    job = _finished_job(contest, http)
    level_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    (level_dir / "bk2").mkdir()
    (level_dir / "bk2" / "Fake-Level1-000000.bk2").write_bytes(b"recording")
    (level_dir / "out").mkdir()
    (level_dir / "out" / "secret.txt").write_text("the agent's own output")
    # A link the agent side could have planted, pointing at the server's configuration.
    (level_dir / "bk2" / "evil.bk2").symlink_to(contest.data_dir / "server.yaml")
    base = f"{contest.url}/jobs/{job['id']}/levels/0/"
    ok = http.get(base + "bk2/Fake-Level1-000000.bk2")
    assert ok.status_code == 200 and ok.content == b"recording"
    assert "attachment" in ok.headers["content-disposition"]
    assert "bk2/Fake-Level1-000000.bk2" in http.get(f"{contest.url}/jobs/{job['id']}").text
    for name in ("../../../../server.yaml", "..%2F..%2F..%2F..%2Fserver.yaml", "bk2/../../../../server.yaml",
                 "%2Fetc%2Fpasswd", "/etc/passwd", "out/secret.txt", "bk2/evil.bk2", "progress.json",
                 "bk2/..%2F..%2Fsummary.json", "monitor.csv%00.txt"):  # fmt: skip
        response = http.get(base + name)
        assert response.status_code == 404, (name, response.status_code)
        assert "registry" not in response.text and "root:" not in response.text
    assert http.get(f"{contest.url}/jobs/{job['id']}/levels/7/monitor.csv").status_code == 404


def test_cancel_needs_the_pages_token_and_its_own_origin(contest):
    _name, _email, http = _team(contest, "cancel")
    job = _running_job(contest, http)
    url = f"{contest.url}/jobs/{job['id']}"
    token = _csrf(http.get(url).text)
    attempts = [
        ({}, {}),  # no token: a plain cross-site form
        ({"csrf": "0" * 64}, {}),  # a guessed token
        ({"csrf": token}, {"Origin": f"http://127.0.0.1:{contest.server.port + 1}"}),  # same host, other port
        ({"csrf": token}, {"Origin": "null"}),  # a sandboxed frame or a data: page
        ({"csrf": token}, {"Sec-Fetch-Site": "same-site"}),
        ({"csrf": token}, {"Sec-Fetch-Site": "cross-site", "Origin": contest.url}),
    ]
    for data, headers in attempts:
        refused = http.post(url + "/cancel", data=data, headers=headers, allow_redirects=False)
        assert refused.status_code == 403, (data, headers, refused.status_code)
    assert http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["status"] == "running"
    # A browser's Sec-Fetch-Site decides alone: behind a proxy, Origin names the proxy, not Host.
    proxied = {"Origin": "https://contest.example.org", "Sec-Fetch-Site": "same-origin"}
    done = http.post(url + "/cancel", data={"csrf": token}, headers=proxied, allow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job['id']}"
    assert contest.wait_job(http, job["id"])["status"] == "cancelled"
    # Cancelling an ended job says why, as the API does.
    again = http.post(url + "/cancel", data={"csrf": token}, allow_redirects=False)
    assert again.status_code == 409 and "nothing to cancel" in again.text
    # Restart from the page: a new attempt of the same job.
    restarted = http.post(url + "/restart", data={"csrf": token}, allow_redirects=False)
    assert restarted.status_code == 303
    assert http.get(f"{contest.url}/rest/job/status/{job['id']}").json()["attempt"] == 2
    http.post(f"{contest.url}/rest/job/kill/{job['id']}")


def test_another_sessions_token_does_not_work(contest):
    """The token is bound to the session it was made for."""
    _name, email, first = _team(contest, "twosessions")
    second = contest.session(email)
    job = _running_job(contest, first)
    token_of_second = _csrf(second.get(f"{contest.url}/jobs/{job['id']}").text)
    refused = first.post(f"{contest.url}/jobs/{job['id']}/cancel", data={"csrf": token_of_second})
    assert refused.status_code == 403
    first.post(f"{contest.url}/rest/job/kill/{job['id']}")


def test_what_an_agent_prints_is_shown_as_text(contest):
    _name, _email, http = _team(contest, "xss")
    job = _finished_job(contest, http)
    level_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    printed = "step 1\n<script>alert('pwned')</script>\n<img src=x onerror=alert(1)>\n"
    (level_dir / "agent-stdout.txt").write_text(printed)
    page = http.get(f"{contest.url}/jobs/{job['id']}").text
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    log = http.get(f"{contest.url}/jobs/{job['id']}/levels/0/agent-stdout.txt")
    assert log.headers["content-type"].startswith("text/plain") and "attachment" in log.headers["content-disposition"]
    assert "sandbox" in log.headers["content-security-policy"]


def test_the_host_pages_are_for_admins_only(contest):
    _name, _email, team = _team(contest, "nothost")
    assert team.get(contest.url + "/host").status_code == 404
    assert requests.get(contest.url + "/host", allow_redirects=False).status_code == 303
    if ADMIN_EMAIL not in _emails(contest.data_dir):
        contest.add_team("The hosts", ADMIN_EMAIL)
    host = contest.session(ADMIN_EMAIL)
    running = _running_job(contest, team)
    page = host.get(contest.url + "/host")
    assert page.status_code == 200
    assert "Running level-runs" in page.text and "Fake/Level1" in page.text
    assert "function" in page.text  # where level-runs run
    assert "nothost" in page.text and "The hosts" in page.text
    assert 'href="/host"' in page.text
    team.post(f"{contest.url}/rest/job/kill/{running['id']}")
    contest.wait_job(team, running["id"])


def test_the_host_page_lists_failures_with_their_reasons(make_module_contest):
    contest = make_module_contest([("Fake", "Crash")], extra_config={"admins": [ADMIN_EMAIL]})
    contest.add_team("The hosts", ADMIN_EMAIL)
    _name, _email, team = _team(contest, "crashing")
    job = team.post(contest.url + "/rest/job/start", json={"tag": "v1"}).json()
    contest.wait_job(team, job["id"])
    page = contest.session(ADMIN_EMAIL).get(contest.url + "/host").text
    assert "crashed on purpose" in page and "no level produced a score" in page


def test_signing_out_needs_the_token_and_ends_the_session(contest):
    _name, _email, http = _team(contest, "signout")
    token = _csrf(http.get(contest.url + "/jobs").text)
    assert http.post(contest.url + "/signout", data={}, allow_redirects=False).status_code == 403
    assert http.get(contest.url + "/rest/user").status_code == 200
    assert http.post(contest.url + "/signout", data={"csrf": token}, allow_redirects=False).status_code == 303
    assert http.get(contest.url + "/rest/user").status_code == 401


def _emails(data_dir: Path) -> set[str]:
    from sqlalchemy import select

    from contestkit.server.config import load_config
    from contestkit.server.storage.db import Database, Team

    database = Database(load_config(data_dir).database())
    try:
        with database.session() as session:
            return set(session.scalars(select(Team.email)))
    finally:
        database.dispose()


def test_the_evaluations_reward_curve_is_served_to_its_team_only(contest):
    from contestkit.runs.curves import write_reward_svg

    _a, _ea, alice = _team(contest, "curve")
    _b, _eb, bob = _team(contest, "nocurve")
    job = _finished_job(contest, alice)
    attempt = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    level_dir = attempt / "01-Fake-Level2"
    write_reward_svg([1.0, 5.0, 3.0], level_dir / "reward-curve.svg", title="<Fake/Level2>")
    # The server draws every level's curve when it ends; without the file (a running level, or a
    # results folder from before) the page draws it inline from monitor.csv.
    (attempt / "00-Fake-Level1" / "reward-curve.svg").unlink()
    page = alice.get(f"{contest.url}/jobs/{job['id']}").text
    url = f"/jobs/{job['id']}/levels/1/reward-curve.svg"
    assert f'<img src="{url}"' in page
    assert page.count("<svg") == 1  # level 1 (no file) is drawn inline from monitor.csv; level 2 is the <img>
    assert ">timesteps</text>" in page  # against timesteps, as the evaluation's own curve
    curve = alice.get(contest.url + url)
    assert curve.status_code == 200 and curve.headers["content-type"] == "image/svg+xml"
    assert "&lt;Fake/Level2&gt;" in curve.text and "sandbox" in curve.headers["content-security-policy"]
    assert bob.get(contest.url + url).status_code == 404


def test_recorded_episodes_play_on_the_job_page_under_its_csp(contest, cli, tmp_path):
    """record: true: the level's best and last episodes, rendered from its real .bk2 recordings by
    the code the Docker executor runs after a recorded level, play in <video> on the job page."""
    from contestkit.runs import replay

    recorded = tmp_path / "rec"
    res = cli("eval", GAME, STATE, "--runtime", "local", "--timestep-limit", "120", "--record", "--no-video",
              "--results-dir", str(recorded), "--quiet", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    _a, _ea, alice = _team(contest, "video")
    _b, _eb, bob = _team(contest, "novideo")
    job = _finished_job(contest, alice)
    level_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    shutil.copytree(recorded / "bk2", level_dir / "bk2")
    assert len(replay.render_highlights(level_dir)) == 2
    response = alice.get(f"{contest.url}/jobs/{job['id']}")
    assert "media-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    for name in ("best-episode", "last-episode"):
        url = f"/jobs/{job['id']}/levels/0/{name}.mp4"
        assert f'src="{url}"' in page and f'poster="/jobs/{job["id"]}/levels/0/{name}.png"' in page
        video = alice.get(contest.url + url)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"  # an MP4 a browser's <video> opens
        assert bob.get(contest.url + url).status_code == 404
