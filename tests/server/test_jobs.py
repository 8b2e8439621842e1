"""The job queue, isolation between teams, scores and the leaderboard (real server process).

Levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py`` (see there); the queue,
workers, scoring and API around it are the real ones.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING

import pytest
import requests

from tests.support.polling import wait_until

if TYPE_CHECKING:
    from tests.support.contest import Contest

LEVELS = [("Fake", "Level1"), ("Fake", "Level2"), ("Fake", "Level3")]


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    """One server (three levels, two jobs at once) for the tests that need nothing special."""
    return make_module_contest(LEVELS, extra_config={"parallel_jobs": 2})


def test_a_job_evaluates_every_level_and_scores_like_the_contest(contest):
    team, http = contest.team("alpha")
    started = http.post(contest.url + "/rest/job/start", json={"tag": "simple-agent:score-100"})
    assert started.status_code == 201, started.text
    job = started.json()
    assert job["image"] == f"127.0.0.1:5000/{team}/simple-agent:score-100"
    assert [w["task"] for w in job["workers"]] == ["Fake/Level1", "Fake/Level2", "Fake/Level3"]
    assert "score" not in job  # absent, not null, until known (the 2018 client tests `'score' in job`)

    done = contest.wait_job(http, job["id"])
    assert done["status"] == "finished", done
    # 30 episodes per level with rewards 100, 101, 102, ...: every level's mean is 101.
    assert [w["score"] for w in done["workers"]] == [101.0, 101.0, 101.0]
    assert all(w["state"] == "finished" and w["progress"] == 1.0 for w in done["workers"])
    assert done["score"] == pytest.approx(101.0)
    assert http.get(contest.url + "/rest/job/status").json()["id"] == job["id"]

    attempt = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    level_dirs = sorted(p.name for p in attempt.iterdir() if p.is_dir())
    assert level_dirs == ["00-Fake-Level1", "01-Fake-Level2", "02-Fake-Level3"]
    assert (attempt / "00-Fake-Level1" / "monitor.csv").read_text().count("\n") == 31
    summary = json.loads((attempt / "summary.json").read_text())
    assert summary["score"] == pytest.approx(101.0) and summary["status"] == "finished"


def test_one_failing_level_does_not_sink_the_others_but_fails_the_job(make_contest):
    """The rule (README, hosting): a job with a failed level is failed and not ranked, so the
    leaderboard keeps the team's last job that finished every level; its levels keep their scores."""
    contest = make_contest([("Fake", "Level1"), ("Fake", "Crash"), ("Fake", "NoEpisodes"), ("Fake", "Level4")])
    _, http = contest.team("alpha")
    (contest.data_dir / "levels.csv").write_text("game,state\nFake,Level1\nFake,Level4\n")  # first a clean job
    good = contest.wait_job(http, http.post(contest.url + "/rest/job/start", json={"tag": "score-40"}).json()["id"])
    assert good["status"] == "finished" and good["score"] == pytest.approx(41.0)
    (contest.data_dir / "levels.csv").write_text("game,state\nFake,Level1\nFake,Crash\nFake,NoEpisodes\nFake,Level4\n")

    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-90"}).json()
    done = contest.wait_job(http, job["id"])
    states = {w["task"]: w for w in done["workers"]}
    assert states["Fake/Level1"]["score"] == 91.0 and states["Fake/Level4"]["score"] == 91.0
    assert states["Fake/Crash"]["state"] == "failed"
    assert "crashed on purpose" in states["Fake/Crash"]["error"]
    assert states["Fake/NoEpisodes"]["state"] == "failed" and "score" not in states["Fake/NoEpisodes"]
    assert done["status"] == "failed" and "score" not in done
    assert done["error"].startswith("2 of 4 levels failed (first Fake/Crash: ")
    assert "not ranked" in done["error"]
    board = requests.get(contest.url + "/rest/leaderboard").json()["leaderboard"]
    assert [(row["job"], row["score"]) for row in board] == [(good["id"], pytest.approx(41.0))]


def test_a_job_where_no_level_scores_fails_with_the_reason(make_contest):
    contest = make_contest([("Fake", "Crash"), ("Fake", "NoEpisodes")])
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1"}).json()
    done = contest.wait_job(http, job["id"])
    assert done["status"] == "failed"
    assert done["error"].startswith("no level produced a score")
    assert requests.get(contest.url + "/rest/leaderboard").json()["leaderboard"] == []


def test_one_job_at_a_time_per_team_even_when_requests_race(contest):
    _, http = contest.team("alpha")
    cookies = dict(http.cookies)
    codes: list[int] = []

    def start() -> None:
        response = requests.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}, cookies=cookies)
        codes.append(response.status_code)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [201, 409, 409, 409, 409, 409]
    busy = http.post(contest.url + "/rest/job/start", json={"tag": "v2"})
    assert busy.status_code == 409
    assert "one job runs at a time" in busy.json()["detail"]
    assert len(http.get(contest.url + "/rest/job/status/all").json()) == 1
    assert http.post(contest.url + "/rest/job/kill").status_code == 200


def test_a_team_cannot_see_or_control_another_teams_job(contest):
    alpha_ns, alpha = contest.team("alpha")
    beta_ns, beta = contest.team("beta")
    job = alpha.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    url = contest.url

    assert beta.get(f"{url}/rest/job/status/{job['id']}").status_code == 404
    assert beta.get(f"{url}/rest/job/status").status_code == 404
    assert beta.get(f"{url}/rest/job/status/all").json() == []
    assert beta.post(f"{url}/rest/job/kill/{job['id']}").status_code == 404
    assert beta.post(f"{url}/rest/job/kill").status_code == 404
    assert beta.post(f"{url}/rest/job/restart/{job['id']}").status_code == 404
    # Nor can Beta have Alpha's image evaluated under its own name.
    stolen = beta.post(f"{url}/rest/job/start", json={"tag": f"127.0.0.1:5000/{alpha_ns}/agent:v1"})
    assert stolen.status_code == 403
    assert "outside your registry namespace" in stolen.json()["detail"]
    assert beta.get(f"{url}/rest/user").json()["cr"]["url"] == f"127.0.0.1:5000/{beta_ns}"

    still = alpha.get(f"{url}/rest/job/status/{job['id']}").json()
    assert still["status"] in ("queued", "running") and "cancel_requested" not in still
    assert alpha.post(f"{url}/rest/job/kill").status_code == 200
    assert contest.wait_job(alpha, job["id"])["status"] == "cancelled"


def test_cancel_a_running_job_and_a_queued_one(make_contest):
    contest = make_contest(LEVELS)
    _, alpha = contest.team("alpha")
    _, beta = contest.team("beta")
    running = alpha.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    contest.wait_job(alpha, running["id"], statuses=("running",))
    # One job at a time on this server (parallel_jobs: 1), so Beta's waits in the queue.
    queued = beta.post(contest.url + "/rest/job/start", json={"tag": "v1"}).json()
    assert beta.get(f"{contest.url}/rest/job/status/{queued['id']}").json()["status"] == "queued"
    killed = beta.post(contest.url + "/rest/job/kill").json()
    assert killed["status"] == "cancelled"
    assert all(w["state"] == "cancelled" for w in killed["workers"])

    assert alpha.post(contest.url + "/rest/job/kill").status_code == 200
    done = contest.wait_job(alpha, running["id"], timeout=15)
    assert done["status"] == "cancelled"
    assert done["workers"][0]["state"] == "cancelled"
    assert alpha.post(contest.url + "/rest/job/kill").status_code == 404  # nothing left to cancel


def test_restart_runs_the_job_again_as_a_new_attempt(contest):
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-7"}).json()
    contest.wait_job(http, job["id"])
    again = http.post(contest.url + "/rest/job/restart")
    assert again.status_code == 200, again.text
    assert again.json()["attempt"] == 2 and again.json()["id"] == job["id"]
    busy = http.post(f"{contest.url}/rest/job/restart/{job['id']}")
    assert busy.status_code == 409
    done = contest.wait_job(http, job["id"])
    assert done["status"] == "finished" and done["score"] == pytest.approx(8.0)
    # summary.json is a copy written just after the result is committed: poll for it, as a reader must.
    for attempt in ("attempt-1", "attempt-2"):
        path = contest.data_dir / "jobs" / str(job["id"]) / attempt / "summary.json"
        wait_until(path.is_file, timeout=30, message=f"{path} to be written")
    assert http.post(f"{contest.url}/rest/job/restart/999").status_code == 404


def test_a_level_that_overruns_its_wall_clock_budget_is_stopped(make_contest):
    contest = make_contest(
        [("Fake", "Slow"), ("Fake", "Level2")], wallclock_limit=1, extra_config={"budget_grace_seconds": 0.5}
    )
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-3"}).json()
    done = contest.wait_job(http, job["id"], timeout=30)
    slow, fine = done["workers"]
    assert slow["state"] == "failed" and "overran its wall-clock budget" in slow["error"]
    assert fine["state"] == "finished" and fine["score"] == 4.0


def test_bad_tags_get_a_sentence(contest):
    _, http = contest.team("alpha")
    bad = http.post(contest.url + "/rest/job/start", json={"tag": "Not A Tag!"})
    assert bad.status_code == 422 and "is not an image tag" in bad.json()["detail"]
    missing = http.post(contest.url + "/rest/job/start", json={})
    assert missing.status_code == 422 and missing.json()["detail"].startswith("Invalid request (tag:")
    digest = http.post(contest.url + "/rest/job/start", json={"tag": "v1", "digest": "md5:abc"})
    assert digest.status_code == 422


def test_leaderboard_ranks_each_teams_latest_finished_job(make_contest):
    contest = make_contest([("Fake", "Level1")])
    for name in ("Alpha", "Beta", "Gamma"):
        contest.add_team(name, f"{name.lower()}@example.org")
    alpha, beta, gamma = (contest.session(f"{n}@example.org") for n in ("alpha", "beta", "gamma"))

    def run(http: requests.Session, tag: str) -> dict:
        job = http.post(contest.url + "/rest/job/start", json={"tag": tag}).json()
        return contest.wait_job(http, job["id"])

    run(alpha, "score-50")
    run(beta, "score-80")
    board = requests.get(contest.url + "/rest/leaderboard").json()  # public, no login
    assert board["start"] == 1
    assert [(r["name"], r["score"]) for r in board["leaderboard"]] == [("Beta", 81.0), ("Alpha", 51.0)]

    run(alpha, "score-90")  # Alpha's latest finished job now counts...
    run(beta, "score-10")  # ...and so does Beta's, even though it is worse (the contest ranked the latest)
    failed = gamma.post(contest.url + "/rest/job/start", json={"tag": "score-99"}).json()
    gamma.post(contest.url + "/rest/job/kill")
    contest.wait_job(gamma, failed["id"])
    board = requests.get(contest.url + "/rest/leaderboard").json()
    assert [(r["name"], r["score"]) for r in board["leaderboard"]] == [("Alpha", 91.0), ("Beta", 11.0)]


def test_openapi_description_is_served(contest):
    spec = requests.get(contest.url + "/openapi.json").json()
    for path in (
        "/rest/login",
        "/rest/logout",
        "/rest/user",
        "/rest/job/start",
        "/rest/job/status",
        "/rest/job/status/all",
        "/rest/job/status/{job_id}",
        "/rest/job/kill",
        "/rest/job/restart",
        "/rest/job/restart/{job_id}",
        "/rest/leaderboard",
        "/rest/token",
    ):
        assert path in spec["paths"], path
    # The error answers are described as they are sent: {"detail": "<sentence>"}, 422 included.
    login = spec["paths"]["/rest/login"]["post"]["responses"]
    assert {"401", "403", "404", "409", "422", "429", "503"} <= set(login)
    assert login["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
    assert spec["components"]["schemas"]["ErrorAnswer"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # No Swagger UI: FastAPI's loads from a CDN (useless offline, against the pages' policy).
    assert requests.get(contest.url + "/docs").status_code == 404
    assert requests.get(contest.url + "/redoc").status_code == 404
    assert "cdn" not in requests.get(contest.url + "/").text.lower()


def test_head_is_answered_wherever_get_is(contest, unique_team):
    """The probe: ``HEAD /`` was 405. Now HEAD gives GET's status and headers, without a body."""
    name, email = unique_team("head")
    contest.add_team(name, email)
    http = contest.session(email)
    for path in ("/", "/rest/leaderboard", "/rest/health", "/openapi.json", "/rest/job/status/all", "/metrics"):
        got, head = http.get(contest.url + path), http.head(contest.url + path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b"" and head.headers.get("content-type") == got.headers.get("content-type"), path
    assert requests.head(contest.url + "/rest/user").status_code == 401  # as GET without a login
    assert requests.head(contest.url + "/rest/logout").status_code == 405  # POST only, as for GET


def test_levels_get_cpu_sets_of_their_own(make_contest):
    """server.yaml cpusets: every running level holds one set, no two at once share it."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to lend two sets")
    sets = [str(cpus[0]), str(cpus[1])]
    levels = [("Fake", f"Level{i}") for i in range(1, 5)]
    contest = make_contest(levels, extra_config={"parallel_levels": 4, "cpusets": sets},
                           env={"CK_FAKE_LEVEL_SECONDS": "1.0"})  # fmt: skip
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-5"}).json()
    done = contest.wait_job(http, job["id"])
    assert done["status"] == "finished", done
    attempt = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    runs = [json.loads(p.read_text()) for p in sorted(attempt.glob("*/summary.json"))]
    assert len(runs) == 4 and {r["cpuset"] for r in runs} == set(sets)
    for lent in sets:
        spans = sorted((r["started_at"], r["ended_at"]) for r in runs if r["cpuset"] == lent)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans
    # Four levels may run at once, but only two sets exist: never more than two ran together.
    edges = sorted([(r["started_at"], 1) for r in runs] + [(r["ended_at"], -1) for r in runs])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_parallel_restarts_of_one_job_start_it_once(contest):
    """8 restarts of one finished job at once: one is accepted, the job runs once with its levels."""
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-7"}).json()
    contest.wait_job(http, job["id"])
    cookies = dict(http.cookies)
    barrier = threading.Barrier(8)
    answers: list[requests.Response] = []

    def restart() -> None:
        barrier.wait()
        answers.append(requests.post(f"{contest.url}/rest/job/restart/{job['id']}", cookies=cookies, timeout=30))

    threads = [threading.Thread(target=restart) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200] + [409] * 7, [a.text for a in answers]
    done = contest.wait_job(http, job["id"])
    assert done["status"] == "finished" and done["attempt"] == 2, done
    assert [w["task"] for w in done["workers"]] == ["Fake/Level1", "Fake/Level2", "Fake/Level3"]
    assert done["score"] == pytest.approx(8.0)


def test_a_restart_that_loses_a_race_is_a_409(offline_contest, interleave_before_write):
    """Two restarts of one job at the same moment: the second is a 409 and the job runs once."""
    from contestkit.server.errors import Conflict
    from contestkit.server.queue import operations

    contest = offline_contest
    job_id = contest.finished_job()
    interleave_before_write(lambda: operations.restart_job(contest.database, contest.config, contest.team_id, job_id))
    with pytest.raises(Conflict) as refused:
        operations.restart_job(contest.database, contest.config, contest.team_id, job_id)
    assert type(refused.value) is Conflict, refused.value  # the API answers it with 409
    assert "restarted by another request" in str(refused.value)
    job = contest.job(job_id)
    assert job["status"] == "queued" and job["attempt"] == 2, job
    assert [(w["task"], w["state"]) for w in job["workers"]] == [("Fake/Level1", "pending"), ("Fake/Level2", "pending")]


def test_a_restart_racing_a_new_submission_is_a_409_not_a_500(offline_contest, interleave_before_write):
    """A restart and a new submission of the same team at once: the loser gets a 409, never a 500."""
    from contestkit.server.errors import Conflict
    from contestkit.server.queue import operations

    contest = offline_contest
    job_id = contest.finished_job(score=6.0)
    submitted: list[int] = []
    interleave_before_write(
        lambda: submitted.append(operations.start_job(contest.database, contest.config, contest.team_id, "v2").id),
    )
    with pytest.raises(Conflict) as refused:
        operations.restart_job(contest.database, contest.config, contest.team_id, job_id)
    assert type(refused.value) is Conflict, refused.value  # the API answers it with 409
    assert f"already has job {submitted[0]} queued" in str(refused.value)
    # Nothing already done is lost: the finished job keeps its score, the submission stays queued.
    job = contest.job(job_id)
    assert job["status"] == "finished" and job["score"] == 6.0 and job["attempt"] == 1, job
    assert [w["state"] for w in job["workers"]] == ["finished", "finished"]
    assert contest.job(submitted[0])["status"] == "queued"


def test_restarts_and_submissions_at_once_never_fail_with_500(make_contest):
    contest = make_contest([("Fake", "Level1")])
    _, http = contest.team("alpha")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1"}).json()
    contest.wait_job(http, job["id"])
    cookies = dict(http.cookies)

    def call(barrier: threading.Barrier, codes: list[int], path: str, body: dict | None) -> None:
        barrier.wait()
        codes.append(requests.post(contest.url + path, json=body, cookies=cookies, timeout=30).status_code)

    for _ in range(4):
        barrier = threading.Barrier(6)
        codes: list[int] = []
        calls = [(f"/rest/job/restart/{job['id']}", None)] * 3 + [("/rest/job/start", {"tag": "v1-slow"})] * 3
        threads = [threading.Thread(target=call, args=(barrier, codes, *c)) for c in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes)[:1] in ([200], [201]) and sorted(codes)[1:] == [409] * 5, codes
        active = http.post(contest.url + "/rest/job/kill").json()
        contest.wait_job(http, active["id"])


@pytest.mark.parametrize("job_id", ["0", "-1", str(2**31), "99999999999999999999999"])
def test_job_ids_no_job_can_have_are_not_found(contest, job_id):
    _, http = contest.team("alpha")
    for method, path in (
        ("GET", f"/rest/job/status/{job_id}"),
        ("POST", f"/rest/job/kill/{job_id}"),
        ("POST", f"/rest/job/restart/{job_id}"),
    ):
        answer = http.request(method, contest.url + path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["detail"] == f"Your team has no job {job_id}; `contestkit jobs --all` lists yours."
    assert http.get(contest.url + "/rest/job/status/abc").status_code == 422  # not a number at all


def test_a_tag_longer_than_the_database_keeps_is_refused(contest):
    _, http = contest.team("alpha")
    tag = "a" * 200 + ":" + "v" * 100  # a valid REPOSITORY:TAG, but 301 characters
    refused = http.post(contest.url + "/rest/job/start", json={"tag": tag})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == "The image tag is 301 characters long; use a tag of at most 256 characters."
    assert http.get(contest.url + "/rest/job/status/all").json() == []
    fits = http.post(contest.url + "/rest/job/start", json={"tag": "a" * 100 + ":" + "v" * 100})
    assert fits.status_code == 201, fits.text
    assert http.post(contest.url + "/rest/job/kill").status_code == 200


def test_the_leaderboard_ranks_a_restarted_job_that_finished_last(contest):
    team, http = contest.team("alpha")

    def finish(response: requests.Response) -> None:
        assert response.status_code in (200, 201), response.text
        assert contest.wait_job(http, response.json()["id"])["status"] == "finished"

    first = http.post(contest.url + "/rest/job/start", json={"tag": "score-50"})
    finish(first)
    finish(http.post(contest.url + "/rest/job/start", json={"tag": "score-80"}))
    # The older job, run again, is now the team's latest finished job: its score counts.
    finish(http.post(f"{contest.url}/rest/job/restart/{first.json()['id']}"))
    board = requests.get(contest.url + "/rest/leaderboard").json()["leaderboard"]
    row = next(r for r in board if r["name"] == team)
    assert (row["job"], row["score"]) == (first.json()["id"], 51.0)


def test_a_tag_that_is_not_valid_text_gets_a_sentence(contest):
    _, http = contest.team("alpha")
    refused = http.post(contest.url + "/rest/job/start", json={"tag": "v1\ud800"})  # a lone surrogate
    assert refused.status_code == 422, refused.text
    assert (
        refused.json()["detail"] == "'v1\\ud800' is not an image tag: use TAG or REPOSITORY:TAG (lower-case "
        "repository, tag of letters, digits, '_', '.', '-')."
    )
