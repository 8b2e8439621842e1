"""``GET /metrics`` and ``/rest/health`` of a real server process with a real SQLite database.

The scrape is read with prometheus-client's own text parser, so what is checked is what Prometheus
would store. Levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.commands import subprocess_env
from tests.support.contest import Contest, unique_team

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]
EXECUTOR = "function"


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    return make_module_contest(LEVELS, env=subprocess_env(CK_FAKE_SLOW_SECONDS="30"))


def scrape(contest: Contest) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    response = requests.get(contest.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(contest: Contest, ready: Callable[[dict], bool], timeout: float = 20.0) -> dict:
    """Scrapes until ``ready`` holds, then returns that scrape (the last one if it never does)."""
    deadline = time.monotonic() + timeout
    samples = scrape(contest)
    while not ready(samples) and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = scrape(contest)
    return samples


def test_the_figures_move_with_a_job(contest):
    before = scrape(contest)
    assert value(before, "contestkit_queue_length") == 0
    assert value(before, "contestkit_level_runs_running", executor=EXECUTOR) == 0
    assert value(before, "contestkit_executor_up", executor=EXECUTOR) == 1

    name, email = unique_team("metrics")
    contest.add_team(name, email)
    http = contest.session(email)
    job = http.post(contest.url + "/rest/job/start", json={"tag": "v1-slow"}).json()
    contest.wait_job(http, job["id"], statuses=("running",))
    # A job is "running" from its claim; its level-run starts a moment later (more on a busy machine).
    level_runs = "contestkit_level_runs_running"
    running = scrape_until(contest, lambda samples: value(samples, level_runs, executor=EXECUTOR) > 0)
    assert value(running, "contestkit_jobs", state="running") == value(before, "contestkit_jobs", state="running") + 1
    assert value(running, level_runs, executor=EXECUTOR) == 1
    assert value(running, "contestkit_running_jobs_stale") == 0
    assert 0 <= value(running, "contestkit_running_job_heartbeat_age_seconds") < 30

    # A second team's job waits in the queue while the first runs (one job at a time here).
    other, other_email = unique_team("queued")
    contest.add_team(other, other_email)
    other_http = contest.session(other_email)
    queued = other_http.post(contest.url + "/rest/job/start", json={"tag": "score-5"}).json()
    assert value(scrape(contest), "contestkit_queue_length") == 1

    http.post(f"{contest.url}/rest/job/kill/{job['id']}")
    contest.wait_job(http, job["id"])
    contest.wait_job(other_http, queued["id"])
    after = scrape(contest)
    assert value(after, "contestkit_queue_length") == 0
    assert value(after, "contestkit_level_runs_running", executor=EXECUTOR) == 0
    assert value(after, "contestkit_jobs", state="cancelled") == value(before, "contestkit_jobs", state="cancelled") + 1
    assert value(after, "contestkit_jobs", state="finished") == value(before, "contestkit_jobs", state="finished") + 1
    # Level-runs that ended: the cancelled one, then the queued job's two finished levels.
    ended = "contestkit_level_run_duration_seconds_count"
    assert value(after, ended, outcome="cancelled") == value(before, ended, outcome="cancelled") + 1
    assert value(after, ended, outcome="finished") == value(before, ended, outcome="finished") + 2
    speed = "contestkit_level_run_steps_per_second_count"
    assert value(after, speed) >= value(before, speed) + 2
    # 300 timesteps in about 0.3 s per finished level: hundreds of steps a second, not zero.
    rate = "contestkit_level_run_steps_per_second_sum"
    assert value(after, rate) > value(before, rate)


def test_latency_is_labelled_by_route_not_by_path(contest):
    for path in ("/", "/rest/leaderboard", "/jobs/123456", "/no/such/page/at/all"):
        requests.get(contest.url + path, allow_redirects=False)
    samples = scrape(contest)
    count = "contestkit_http_request_duration_seconds_count"
    assert value(samples, count, route="/", method="GET") >= 1
    assert value(samples, count, route="/rest/leaderboard", method="GET") >= 1
    assert value(samples, count, route="/jobs/{job_id}", method="GET") >= 1
    assert value(samples, count, route="unmatched", method="GET") >= 1
    assert not any("/no/such" in str(labels) or "123456" in str(labels) for _name, labels in samples)
    assert value(samples, "contestkit_http_requests_total", route="/jobs/{job_id}", method="GET", status="303") >= 1


def test_invented_methods_and_paths_do_not_grow_the_scrape(contest):
    """1,000 requests with made-up methods and paths (the probe grew /metrics from 0.33 MB to 7.7 MB
    with 100 such methods): the scrape stays within a fixed bound, and the methods are ``other``."""
    http = requests.Session()
    for n in range(1000):
        method = f"X{n:04d}" + "M" * 200
        http.request(method, f"{contest.url}/invented/{n}/" + "p" * 200, timeout=10)
    http.request("X" * 4000, contest.url + "/rest/leaderboard", timeout=10)
    text = requests.get(contest.url + "/metrics", timeout=10).text
    assert len(text.encode()) < 100_000, f"/metrics grew to {len(text)} bytes"
    assert "X0001" not in text and "invented" not in text
    samples = scrape(contest)
    count = "contestkit_http_request_duration_seconds_count"
    assert value(samples, count, route="unmatched", method="other") >= 1000
    # The 4,000-character method on a known route is 405, counted under that route as ``other``.
    requests_total = "contestkit_http_requests_total"
    assert value(samples, requests_total, route="/rest/leaderboard", method="other", status="405") >= 1


def test_failed_logins_are_counted(contest):
    name, email = unique_team("guess")
    contest.add_team(name, email)
    before = value(scrape(contest), "contestkit_login_failures_total")
    for _ in range(3):
        wrong = requests.post(contest.url + "/rest/login", json={"email": email, "password": "nope-nope"})
        assert wrong.status_code == 401
    contest.session(email)  # a right password is not a failure
    assert value(scrape(contest), "contestkit_login_failures_total") == before + 3


def test_health_reports_the_database_and_the_executor(contest):
    health = requests.get(contest.url + "/rest/health").json()
    assert health["ok"] is True
    assert health["database"]["ok"] is True
    detail = "function runs level-runs in the server's process"
    assert health["executor"] == {"name": EXECUTOR, "ok": True, "detail": detail}


def test_health_says_when_no_docker_engine_answers(make_contest, tmp_path):
    """The Docker executor with no engine behind DOCKER_HOST: the server runs, health says why levels cannot."""
    env = subprocess_env(DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")
    docker_contest = make_contest([("Airstriker-Genesis", "Level1")], evaluator=None, env=env)
    health = requests.get(docker_contest.url + "/rest/health").json()
    assert health["ok"] is True and health["database"]["ok"] is True
    assert health["executor"]["name"] == "docker" and health["executor"]["ok"] is False
    assert "no-docker.sock" in health["executor"]["detail"]
    assert value(scrape(docker_contest), "contestkit_executor_up", executor="docker") == 0
