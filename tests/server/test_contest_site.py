"""The contest site tells the truth (issue 24): the phase in one line everywhere, the frozen board,
the final's page, baselines marked, and nothing a team can see that changes when the final starts.

In-process: the ASGI app of ``create_app`` (no scheduler) on the offline contest, on SQLite and
PostgreSQL; requests go through ``asgi_request``. Jobs are written as finished, not run.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime

from typer.testing import CliRunner

from contestkit.cli import app as cli_app
from contestkit.server.app import create_app
from contestkit.server.contest import final, leaderboards, phases
from tests.support.contest_plans import add, close, configure, finished, with_final

DAY = 86400.0


def _token(asgi_request, app, email: str, password: str) -> dict[str, str]:
    status, _, body = asgi_request(app, "POST", "/rest/token", json={"email": email, "password": password})
    assert status == 201, body
    return {"Authorization": f"Bearer {json.loads(body)['token']}"}


def _stamp(at: float) -> str:
    return phases.format_time(at)


def _iso(at: float) -> str:
    """``at`` as server.yaml writes a time."""
    return datetime.fromtimestamp(at, UTC).isoformat()


def _minute(at: float) -> str:
    """``at`` as the pages show it."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))


def test_the_phase_is_one_line_at_every_step_and_the_final_is_told_to_the_host_only(offline_contest):
    contest = offline_contest
    now = time.time()
    opens, closes, freeze = now + DAY, now + 3 * DAY, now + 2 * DAY
    opens, closes, freeze = (float(int(t)) for t in (opens, closes, freeze))
    with_final(contest, opens=_iso(opens), closes=_iso(closes))
    configure(contest, freeze_at=_iso(freeze))

    def line(at: float, host: bool = False) -> str:
        with contest.database.session() as db:
            return phases.current_phase(db, contest.config, at, host=host).line

    assert line(now) == f"Not open yet: submissions open at {_stamp(opens)}."
    assert line(opens) == f"Open until {_stamp(closes)}."
    assert line(freeze) == f"Open until {_stamp(closes)}; the leaderboard is frozen since {_stamp(freeze)}."
    assert line(closes) == f"Closed since {_stamp(closes)}; the leaderboard is frozen since {_stamp(freeze)}."
    with contest.database.session() as db:
        phases.set_state(db, phases.StateKey.FINAL_STARTED, closes + 10, "cli:host")
    assert line(closes + 20) == f"Closed since {_stamp(closes)}; the leaderboard is frozen since {_stamp(freeze)}."
    assert line(closes + 20, host=True) == (
        f"Closed since {_stamp(closes)}; the final is running; the leaderboard is frozen since {_stamp(freeze)}."
    )
    with contest.database.session() as db:
        phases.set_state(db, phases.StateKey.FINAL_PUBLISHED, closes + 30, "cli:host")
    assert line(closes + 40) == line(closes + 40, host=True) == f"Final results published at {_stamp(closes + 30)}."


def test_a_pasted_example_with_past_dates_is_warned_at_start_naming_the_dates(offline_contest, caplog, monkeypatch):
    """Finding: the README's example (closes 2026-06-05, freeze 2026-06-01) started silently."""
    contest = offline_contest
    configure(
        contest,
        phases={"leaderboard": {"opens": "2026-06-02T00:00:00Z", "closes": "2026-06-05T00:00:00Z"}},
        freeze_at="2026-06-01T00:00:00Z",
    )
    warnings = phases.plan_warnings(contest.config, time.time())
    assert len(warnings) == 2, warnings
    assert "entirely in the past" in warnings[0] and "2026-06-05 00:00:00 UTC" in warnings[0]
    assert "before phases.leaderboard.opens" in warnings[1] and "2026-06-01 00:00:00 UTC" in warnings[1]
    app = create_app(contest.data_dir, start_scheduler=False)

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    with caplog.at_level("INFO", logger="contestkit.server"):
        asyncio.run(start_and_stop())
    said = caplog.text
    assert "Contest phase: Closed since 2026-06-05 00:00:00 UTC" in said and "entirely in the past" in said
    # `contestkit server status` says the same line and the warnings.
    result = CliRunner().invoke(cli_app, ["server", "status", "--data-dir", str(contest.data_dir)])
    assert result.exit_code == 0, result.output
    assert "Closed since 2026-06-05 00:00:00 UTC" in result.output and "entirely in the past" in result.output
    # The data directory's default is `contest`, the docs' name for it.
    assert contest.data_dir.name == "contest"
    monkeypatch.chdir(contest.data_dir.parent)
    by_default = CliRunner().invoke(cli_app, ["server", "status"])
    assert by_default.exit_code == 0 and by_default.output.splitlines()[0] == result.output.splitlines()[0]


def test_a_frozen_board_shows_the_frozen_standings_never_no_job_has_finished(offline_contest, asgi_request):
    """Finding: with freeze_at passed, the page said "No job has finished yet" though jobs had finished."""
    contest = offline_contest
    freeze = time.time() - 100
    configure(contest, freeze_at=_iso(freeze))
    finished(contest, contest.team_id, 7.0)  # after the freeze: not on the public board
    app = create_app(contest.data_dir, start_scheduler=False)
    status, _, page = asgi_request(app, "GET", "/")
    text = page.decode()
    assert status == 200
    assert "No job has finished yet" not in text
    assert f"No job had finished when the leaderboard froze at {_minute(freeze)}" in text
    assert "the leaderboard is frozen since" in text
    beta = add(contest, "beta")
    finished(contest, beta, 3.0, at=freeze - 50)  # before the freeze: it stands
    text = asgi_request(app, "GET", "/")[2].decode()
    assert 'data-team="beta"' in text and 'data-team="alpha"' not in text and "Frozen since" in text


def test_after_an_early_close_the_page_gives_the_close_not_the_planned_date(offline_contest, asgi_request):
    """Finding: the host closed submissions early and `/` still said "closes <the configured date>"."""
    contest = offline_contest
    now = float(int(time.time()))
    planned = now + 3 * DAY
    with_final(contest, opens=_iso(now - DAY), closes=_iso(planned))
    app = create_app(contest.data_dir, start_scheduler=False)
    assert f"closes {_minute(planned)}" in asgi_request(app, "GET", "/")[2].decode()
    with contest.database.session() as db:
        phases.set_state(db, phases.StateKey.CLOSED, now - 60, "cli:host")
    text = asgi_request(app, "GET", "/")[2].decode()
    assert f"closed {_minute(now - 60)}" in text and f"closes {_minute(planned)}" not in text


def test_baselines_are_marked_on_the_web_board_and_the_final_page_matches_the_export(offline_contest, asgi_request):
    contest = offline_contest
    with_final(contest)
    configure(contest, baselines=["beta@example.org"])
    beta = add(contest, "beta")
    finished(contest, contest.team_id, 5.0)
    finished(contest, beta, 9.0)
    app = create_app(contest.data_dir, start_scheduler=False)
    board = asgi_request(app, "GET", "/")[2].decode()
    row = re.search(r'<tr data-team="beta" class="baseline">(.*?)</tr>', board, re.S)
    assert row and '<span class="badge">baseline</span>' in row.group(1), board
    alpha = re.search(r'<tr data-team="alpha">(.*?)</tr>', board, re.S)
    assert alpha and "badge" not in alpha.group(1)
    # Before publishing: "not published yet" and nothing else of the final (no level, no team).
    close(contest)
    final.start(contest.database, contest.config, "cli:host", time.time())
    status, _, page = asgi_request(app, "GET", "/final")
    text = page.decode()
    assert status == 200 and "The final results are not published yet." in text
    assert "SecretLevel" not in text and "<table" not in text and "beta" not in text
    with contest.database.session() as db:
        for job in db.query(final.Job).filter(final.Job.phase == "final"):
            job.status, job.score = "finished", 10.0 if job.team_id == contest.team_id else 2.0
            for worker in job.workers:
                worker.status, worker.score = "finished", job.score
    final.publish(contest.database, contest.config, "cli:host", time.time())
    text = asgi_request(app, "GET", "/final")[2].decode()
    shown = re.findall(r'<tr data-team="([^"]+)"', text)
    with contest.database.session() as db:
        exported = json.loads(leaderboards.export(db, contest.config, fmt="json", final=True))["rows"]
    assert shown == [row["name"] for row in exported] == ["alpha", "beta"]
    assert "SecretLevel1" in text and '<span class="badge">baseline</span>' in text
    assert exported[1].get("baseline") is True
    assert 'href="/final"' in asgi_request(app, "GET", "/")[2].decode()
    assert (
        asgi_request(app, "GET", "/rest/leaderboard/final")[2]
        and json.loads(asgi_request(app, "GET", "/rest/leaderboard/final")[2])["leaderboard"][1]["baseline"] is True
    )


def test_no_public_or_team_answer_changes_when_the_final_starts(offline_contest, asgi_request, password):
    """Finding: the public Subm. column counted hidden final jobs (2 became 3 at `final start`).

    Every public and team answer is compared byte for byte before and after `final start`; none is
    allowed to change (the phase teams see stays "closed" until the results are published)."""
    contest = offline_contest
    with_final(contest)
    beta = add(contest, "beta")
    jobs = [finished(contest, contest.team_id, 5.0), finished(contest, contest.team_id, 6.0)]
    finished(contest, beta, 4.0)
    close(contest)
    app = create_app(contest.data_dir, start_scheduler=False)
    team = _token(asgi_request, app, "alpha@example.org", password)
    public = ["/", "/?page=2", "/levels/1", "/levels/2", "/final", "/rest/leaderboard", "/rest/contest",
              "/rest/leaderboard?level=Fake/Level1", "/rest/leaderboard/final"]  # fmt: skip
    mine = ["/jobs", f"/jobs/{jobs[1]}", "/rest/job/status", "/rest/job/status/all", f"/rest/job/status/{jobs[0]}",
            "/rest/job/check", f"/rest/job/{jobs[1]}/results", "/rest/user"]  # fmt: skip

    def answers() -> dict[str, tuple[int, bytes]]:
        seen = {path: asgi_request(app, "GET", path)[::2] for path in public}
        seen.update({"team " + path: asgi_request(app, "GET", path, headers=team)[::2] for path in mine})
        return seen

    before = answers()
    row = re.search(r'<tr data-team="alpha">(.*?)</tr>', before["/"][1].decode(), re.S)
    assert row and re.search(r'<td class="num wide">2</td>', row.group(1)), row
    started = final.start(contest.database, contest.config, "cli:host", time.time())
    assert started["teams_with_final_job"] == 2
    after = answers()
    changed = [path for path in before if before[path] != after[path]]
    assert changed == [], {path: (before[path], after[path]) for path in changed}


def test_submit_can_ask_first_and_gets_the_servers_own_refusal(offline_contest, asgi_request, password):
    contest = offline_contest
    app = create_app(contest.data_dir, start_scheduler=False)
    team = _token(asgi_request, app, "alpha@example.org", password)
    assert asgi_request(app, "GET", "/rest/job/check", headers=team)[:3:2] == (200, b'{"ok":true}')
    close(contest, at=1_000_000.0)
    status, _, body = asgi_request(app, "GET", "/rest/job/check", headers=team)
    started = asgi_request(app, "POST", "/rest/job/start", json={"tag": "v1"}, headers=team)
    assert status == started[0] == 403 and body == started[2]
    assert json.loads(body)["detail"] == (
        "Submissions closed at 1970-01-12 13:46:40 UTC; the contest takes no more submissions."
    )
    assert asgi_request(app, "GET", "/rest/job/check")[0] == 401


def test_level_pages_count_from_one_like_the_board(offline_contest, asgi_request):
    contest = offline_contest
    finished(contest, contest.team_id, 165.714)
    app = create_app(contest.data_dir, start_scheduler=False)
    first = asgi_request(app, "GET", "/levels/1")[2].decode()
    assert "level 1 of 2" in first and "Fake/Level1" in first
    assert "165.7" in first and "165.714" not in first  # the histogram rounds as the table does
    assert "level 2 of 2" in asgi_request(app, "GET", "/levels/2")[2].decode()
    missing = asgi_request(app, "GET", "/levels/0")
    assert missing[0] == 404 and "The level set has 2 levels, numbered from 1." in missing[2].decode()
    assert 'href="/levels/1"' in asgi_request(app, "GET", "/")[2].decode()


def test_the_contest_page_shows_the_name_and_renders_the_description_safely(offline_contest, asgi_request):
    contest = offline_contest
    configure(
        contest,
        name="Sonic Retro Contest",
        description="Train an agent for **Sonic**. <script>alert(1)</script> [x](javascript:alert(1))",
        rules_url="https://example.org/rules",
    )
    app = create_app(contest.data_dir, start_scheduler=False)
    text = asgi_request(app, "GET", "/")[2].decode()
    assert "<h1>Sonic Retro Contest</h1>" in text and "<strong>Sonic</strong>" in text
    assert "<title>Leaderboard · Sonic Retro Contest</title>" in text  # the name once (it was repeated)
    assert "<script>alert" not in text and "&lt;script&gt;" in text and 'href="javascript' not in text
    assert 'href="https://example.org/rules"' in text and "Open until the host closes submissions." in text
    document = json.loads(asgi_request(app, "GET", "/rest/contest")[2])
    assert document["name"] == "Sonic Retro Contest" and document["levels"] == ["Fake/Level1", "Fake/Level2"]
    assert document["phase"]["state"] == "open"
