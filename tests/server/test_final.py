"""The hidden final (issue 15): every team evaluated exactly once, also after a server kill; the final
level names absent from every answer a team can get before publishing (the answers' TEXT is checked).

In-process tests run on SQLite and PostgreSQL; the end-to-end ones run a real server process whose
levels are evaluated by the TEST DOUBLE ``tests/server/fake_level_runner.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from contestkit.server.config import load_config
from contestkit.server.contest import final, hosting, teams
from contestkit.server.contest.teams import add_team
from contestkit.server.errors import Conflict, Forbidden, NotFound
from contestkit.server.queue import operations
from contestkit.server.storage.db import Job

SECRET = "SecretLevel"
FINAL_LEVELS = [("Fake", f"{SECRET}1"), ("Fake", f"{SECRET}2")]


def _with_final(contest, selection: str = "latest") -> None:
    (contest.data_dir / "final-levels.csv").write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in FINAL_LEVELS))
    path = contest.data_dir / "server.yaml"
    document = yaml.safe_load(path.read_text())
    document["phases"] = {"final": {"levels": "final-levels.csv", "priority": 7, "selection": selection}}
    path.write_text(yaml.safe_dump(document))
    contest.config = load_config(contest.data_dir)


def _team(contest, name: str) -> int:
    add_team(contest.data_dir, name=name, email=f"{name}@example.org", password="a long password")
    with contest.database.session() as db:
        return teams.find_team(db, name).id


def _finished(contest, team_id: int, score: float, tag: str = "v1") -> int:
    job = operations.start_job(contest.database, contest.config, team_id, tag)
    with contest.database.session() as db:
        row = db.get(Job, job.id)
        row.status, row.score, row.finished_at = "finished", score, time.time()
    return job.id


def _close(contest) -> None:
    with contest.database.session() as db:
        hosting.close_submissions(db, contest.config, "cli:host", time.time())


def test_the_final_evaluates_each_teams_latest_finished_submission_once(offline_contest, monkeypatch):
    contest = offline_contest
    _with_final(contest)
    alpha = contest.team_id
    beta, gamma = _team(contest, "beta"), _team(contest, "gamma")  # gamma never finished a job
    _finished(contest, alpha, 5.0, "old")
    latest_alpha = _finished(contest, alpha, 1.0, "new")  # the latest, not the best, as in 2018
    latest_beta = _finished(contest, beta, 3.0)
    with pytest.raises(Conflict, match="Submissions are still open; close them first"):
        final.start(contest.database, contest.config, "cli:host", time.time())
    _close(contest)

    # A crash after the first team was queued: the second run queues the rest, nobody twice.
    real = final.selected_job
    calls = {"n": 0}

    def crash_on_second(db, config, team):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the host's machine went down")
        return real(db, config, team)

    monkeypatch.setattr(final, "selected_job", crash_on_second)
    with pytest.raises(RuntimeError):
        final.start(contest.database, contest.config, "cli:host", time.time())
    monkeypatch.setattr(final, "selected_job", real)
    final.start(contest.database, contest.config, "cli:host", time.time())
    document = final.start(contest.database, contest.config, "cli:host", time.time())  # and once more
    with contest.database.session() as db:
        jobs = db.scalars(select(Job).where(Job.phase == "final").order_by(Job.team_id)).all()
        assert [(j.team_id, j.source_job_id, j.priority) for j in jobs] == [
            (alpha, latest_alpha, 7),
            (beta, latest_beta, 7),
        ]
        assert [w.task for w in jobs[0].workers] == [f"Fake/{SECRET}1", f"Fake/{SECRET}2"]
        assert gamma not in [j.team_id for j in jobs]
    assert document["jobs"] == {"queued": 2} and document["levels"] == ["Fake/SecretLevel1", "Fake/SecretLevel2"]
    assert document["without_entry"] == ["gamma"], "the host is told who gets no final job, and why"
    # The database itself refuses a second final job for a team (two hosts racing cannot get past it).
    with pytest.raises(IntegrityError), contest.database.session() as db:
        db.add(
            Job(team_id=alpha, tag="x", image="x", status="queued", timestep_limit=1, wallclock_limit=1, phase="final")
        )
        db.flush()
    # The team's own views never show the final job.
    with contest.database.session() as db:
        assert all(j.phase == "leaderboard" for j in operations.all_jobs(db, alpha))
        assert operations.latest_job(db, alpha).id == latest_alpha
        with pytest.raises(NotFound):
            operations.get_job(db, alpha, jobs[0].id)


def test_publish_waits_for_the_final_jobs_and_ranks_ties_by_earlier_submission(offline_contest):
    contest = offline_contest
    _with_final(contest)
    beta = _team(contest, "beta")
    _finished(contest, contest.team_id, 2.0)
    _finished(contest, beta, 2.0)
    _close(contest)
    with pytest.raises(Conflict, match="has not started"):
        final.publish(contest.database, contest.config, "cli:host", time.time())
    final.start(contest.database, contest.config, "cli:host", time.time())
    with pytest.raises(Conflict, match="has not ended"):
        final.publish(contest.database, contest.config, "cli:host", time.time())
    with contest.database.session() as db:
        for job in db.scalars(select(Job).where(Job.phase == "final")):
            job.status, job.score = "finished", 4.0  # the same score: the earlier submission wins
            for worker in job.workers:
                worker.status, worker.score = "finished", 4.0
    published = final.publish(contest.database, contest.config, "cli:host", 1234.0)
    assert final.publish(contest.database, contest.config, "cli:host", 9999.0) == published == 1234.0
    with contest.database.session() as db:
        ranking = final.ranking(db, contest.config)
    assert [(r["rank"], r["name"]) for r in ranking] == [(1, "alpha"), (2, "beta")]
    assert ranking[0]["levels"] == {"Fake/SecretLevel1": 4.0, "Fake/SecretLevel2": 4.0}


def test_teams_choose_their_submission_before_the_close_when_the_host_allows(offline_contest):
    contest = offline_contest
    _with_final(contest, selection="latest")
    chosen = _finished(contest, contest.team_id, 9.0)
    with pytest.raises(Forbidden, match="latest finished submission; none is chosen"):
        final.select_submission(contest.database, contest.config, contest.team_id, chosen, time.time())
    _with_final(contest, selection="team")
    final.select_submission(contest.database, contest.config, contest.team_id, chosen, time.time())
    _finished(contest, contest.team_id, 1.0)  # a later one: the choice still stands
    with pytest.raises(NotFound, match="no job 999"):
        final.select_submission(contest.database, contest.config, contest.team_id, 999, time.time())
    _close(contest)
    with pytest.raises(Forbidden, match="Submissions closed"):
        final.select_submission(contest.database, contest.config, contest.team_id, chosen, time.time())
    final.start(contest.database, contest.config, "cli:host", time.time())
    with contest.database.session() as db:
        assert db.scalar(select(Job.source_job_id).where(Job.phase == "final")) == chosen


# -- end to end, with a server process ------------------------------------------------------------

ADMIN = "host@example.org"


def _wait_final(host: requests.Session, url: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    document: dict = {}
    while time.monotonic() < deadline:
        document = host.get(url + "/rest/admin/final").json()
        if document["jobs"] and not set(document["jobs"]) & {"queued", "running"}:
            return document
        time.sleep(0.2)
    raise AssertionError(f"the final did not end: {document}")


def test_a_contest_from_open_to_published_final_with_a_kill_in_the_middle(make_contest, base_env, tmp_path: Path, cli):
    run_log = tmp_path / "runs.log"
    env = base_env(CK_FAKE_LEVEL_SECONDS="1.5", CK_FAKE_RUN_LOG=str(run_log))
    contest = make_contest(
        [("Fake", "Level1")],
        env=env,
        extra_config={
            "admins": [ADMIN],
            "parallel_jobs": 1,
            "phases": {"final": {"levels": "final-levels.csv", "priority": 5}},
        },
    )
    (contest.data_dir / "final-levels.csv").write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in FINAL_LEVELS))
    contest.add_team("The hosts", ADMIN)
    host = contest.session(ADMIN)
    teams = [contest.team("finalist") for _ in range(3)]
    for _name, http in teams:
        job = http.post(contest.url + "/rest/job/start", json={"tag": "score-20"}).json()
        assert contest.wait_job(http, job["id"])["status"] == "finished"

    assert host.post(contest.url + "/rest/admin/close").status_code == 200
    refused = teams[0][1].post(contest.url + "/rest/job/start", json={"tag": "score-30"})
    assert refused.status_code == 403 and refused.json()["detail"].startswith("Submissions closed at ")

    # What the CLI shows everyone (text and JSON) does not change when the final starts.
    shown_before = [cli("leaderboard", *extra, "--server", contest.url).stdout for extra in ((), ("--json",))]
    started = host.post(contest.url + "/rest/admin/final/start")
    assert started.status_code == 200, started.text
    shown_after = [cli("leaderboard", *extra, "--server", contest.url).stdout for extra in ((), ("--json",))]
    assert shown_after == shown_before and "finalist" in shown_before[1]
    final_ids = {row["job"] for row in started.json()["teams"]}
    assert len(final_ids) == 3
    # Kill the server while the final runs (the levels take 1.5 s each, one job at a time).
    deadline = time.monotonic() + 60
    while host.get(contest.url + "/rest/admin/final").json()["jobs"].get("finished", 0) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    contest.server.kill()
    contest.server.start()
    host = contest.session(ADMIN)
    again = host.post(contest.url + "/rest/admin/final/start").json()  # the host runs it again: no one twice
    assert {row["job"] for row in again["teams"]} == final_ids
    done = _wait_final(host, contest.url)
    assert done["jobs"] == {"finished": 3} and len(done["ranking"]) == 3

    # Before publish, nothing a team can ask names a final level.
    _name, http = teams[0]
    token = http.post(contest.url + "/rest/token", json={"name": "t"}).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    answers = [
        http.get(contest.url + "/rest/job/status"),
        http.get(contest.url + "/rest/job/status/all"),
        requests.get(contest.url + "/rest/leaderboard"),
        requests.get(contest.url + "/rest/leaderboard/final"),
        requests.get(contest.url + "/openapi.json"),
        http.post(contest.url + "/rest/job/restart"),
        http.post(contest.url + "/rest/job/kill"),
        http.get(contest.url + "/rest/admin/final", headers=bearer),
    ]
    for job_id in final_ids:
        answers += [
            http.get(f"{contest.url}/rest/job/status/{job_id}"),
            http.post(f"{contest.url}/rest/job/restart/{job_id}"),
            http.post(f"{contest.url}/rest/job/kill/{job_id}"),
            http.post(f"{contest.url}/rest/job/select/{job_id}"),
        ]
    for answer in answers:
        assert SECRET not in answer.text, (answer.request.url, answer.text)
    assert requests.get(contest.url + "/rest/leaderboard/final").status_code == 404
    # ... nor the pages, nor the CLI: `leaderboard --final` and /final say "not published yet" and nothing else.
    page = requests.get(contest.url + "/final")
    assert page.status_code == 200 and "The final results are not published yet." in page.text
    assert SECRET not in page.text and "finalist" not in page.text
    unpublished = cli("leaderboard", "--final", "--server", contest.url)
    assert unpublished.returncode == 0 and unpublished.stdout.strip() == "The final results are not published yet."
    board = cli("leaderboard", "--server", contest.url)
    assert board.returncode == 0 and SECRET not in board.stdout and "the final is running" not in board.stdout
    assert "Closed since" in board.stdout.splitlines()[0], board.stdout
    status = cli("server", "status", "--data-dir", str(contest.data_dir))
    assert "the final is running" in status.stdout, status.stdout  # the host is told
    watched = cli("server", "final", "status", "--watch", "--data-dir", str(contest.data_dir))
    assert watched.returncode == 0 and "Final: started " in watched.stdout and "not published" in watched.stdout
    assert "started not started" not in watched.stdout

    assert host.post(contest.url + "/rest/admin/final/publish").status_code == 200
    public = requests.get(contest.url + "/rest/leaderboard/final").json()["leaderboard"]
    assert len(public) == 3 and set(public[0]["levels"]) == {f"Fake/{SECRET}1", f"Fake/{SECRET}2"}
    # Published: the page, the CLI (text and JSON) and the export show one ranking.
    exported = [line.split(",")[1] for line in cli(
        "server", "export", "--final", "--data-dir", str(contest.data_dir)
    ).stdout.splitlines()[1:]]  # fmt: skip
    assert [row["name"] for row in public] == exported
    page = requests.get(contest.url + "/final").text
    assert re.findall(r'<tr data-team="([^"]+)"', page) == exported and f"Fake/{SECRET}1" in page
    shown = cli("leaderboard", "--final", "--json", "--server", contest.url)
    assert [row["name"] for row in json.loads(shown.stdout)["leaderboard"]] == exported
    text = cli("leaderboard", "--final", "--server", contest.url).stdout
    assert "Final results published" in text and f"L1: Fake/{SECRET}1" in text

    # Each team's final job ran once: every final level appears in the run log under one job id per team.
    runs = [line.split() for line in run_log.read_text().splitlines()]
    final_runs = {(job, state) for job, _idx, state in runs if SECRET in state}
    assert {int(job) for job, _state in final_runs} == final_ids
    assert len(final_runs) == 6
