"""Phases in server.yaml, the submission window and quotas (issue 15), on SQLite and PostgreSQL.

Time is injected (``start_job(..., clock=...)``), never waited for: each boundary is tested at the
second before, the second itself and the second after.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from contestkit.errors import UsageError
from contestkit.server.config import load_config
from contestkit.server.contest import hosting, phases, teams
from contestkit.server.errors import Forbidden, QuotaExceeded
from contestkit.server.queue import operations
from contestkit.server.storage.db import Job

OPENS = datetime(2018, 4, 5, tzinfo=UTC).timestamp()
CLOSES = datetime(2018, 6, 5, tzinfo=UTC).timestamp()
DAY = 86400.0


def _configure(contest, **settings) -> None:
    """Rewrite server.yaml with ``settings`` and reload the contest's configuration."""
    path = contest.data_dir / "server.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(settings)
    path.write_text(yaml.safe_dump(document))
    contest.config = load_config(contest.data_dir)


def _submit(contest, at: float, tag: str = "v1") -> Job:
    return operations.start_job(contest.database, contest.config, contest.team_id, tag, clock=lambda: at)


def _end(contest, job_id: int, status: str = "finished") -> None:
    with contest.database.session() as db:
        db.execute(update(Job).where(Job.id == job_id).values(status=status, score=1.0, finished_at=0.0))


def test_a_data_dir_without_phases_is_one_open_leaderboard_phase(offline_contest):
    plan = phases.contest_plan(offline_contest.config)
    assert plan.leaderboard.opens is None and plan.leaderboard.closes is None and plan.final is None
    assert plan.ranking is phases.Ranking.LATEST
    assert [lv.task for lv in phases.levels_of(offline_contest.config, phases.PhaseKind.LEADERBOARD)] == [
        "Fake/Level1",
        "Fake/Level2",
    ]
    job = _submit(offline_contest, at=0.0)  # any time at all
    assert job.status == "queued"


def test_submissions_open_at_the_opening_second_and_close_at_the_closing_one(offline_contest):
    contest = offline_contest
    _configure(contest, phases={"leaderboard": {"opens": "2018-04-05T00:00:00Z", "closes": "2018-06-05T00:00:00Z"}})
    with pytest.raises(Forbidden) as early:
        _submit(contest, OPENS - 1)
    assert str(early.value) == "Submissions open at 2018-04-05 00:00:00 UTC; submit again then."
    _end(contest, _submit(contest, OPENS).id)
    _end(contest, _submit(contest, CLOSES - 1).id)
    with pytest.raises(Forbidden) as late:
        _submit(contest, CLOSES)
    assert str(late.value) == "Submissions closed at 2018-06-05 00:00:00 UTC; the contest takes no more submissions."
    with pytest.raises(Forbidden, match="closed"):
        _submit(contest, CLOSES + 1)
    # A team's restart after the close would change the leaderboard: refused too.
    with pytest.raises(Forbidden, match="closed"):
        operations.restart_job(contest.database, contest.config, contest.team_id, None, clock=lambda: CLOSES + 1)


def test_a_phase_without_times_is_open_until_the_host_closes_it(offline_contest):
    contest = offline_contest
    _end(contest, _submit(contest, 1000.0).id)
    with contest.database.session() as db:
        assert hosting.close_submissions(db, contest.config, "cli:host", 2000.0) == 2000.0
    with contest.database.session() as db:  # a second close keeps the first moment
        assert hosting.close_submissions(db, contest.config, "cli:host", 3000.0) == 2000.0
    _end(contest, _submit(contest, 1999.0).id)  # before the host's close (time injected)
    with pytest.raises(Forbidden, match="Submissions closed at 1970-01-01 00:33:20 UTC"):
        _submit(contest, 2000.0)


def test_a_daily_quota_says_when_the_next_submission_is_allowed(offline_contest):
    contest = offline_contest
    _configure(contest, phases={"leaderboard": {"quota": {"per_day": 2}}})
    t0 = OPENS
    _end(contest, _submit(contest, t0).id)
    _end(contest, _submit(contest, t0 + 3600).id)
    with pytest.raises(QuotaExceeded) as refused:
        _submit(contest, t0 + 7200)
    assert str(refused.value) == (
        "Your team has used its 2 submissions of the last 24 hours; the next is allowed at 2018-04-06 00:00:00 UTC."
    )
    assert refused.value.retry_after == int(DAY - 7200) + 1
    with pytest.raises(QuotaExceeded):
        _submit(contest, t0 + DAY - 1)
    _end(contest, _submit(contest, t0 + DAY).id)  # the first one is a day old: its slot is free
    with pytest.raises(QuotaExceeded, match="2018-04-06 01:00:00 UTC"):
        _submit(contest, t0 + DAY + 1)


@pytest.mark.parametrize("count_failed", [True, False])
def test_failed_jobs_count_or_not_as_the_host_chose(offline_contest, count_failed):
    contest = offline_contest
    _configure(contest, phases={"leaderboard": {"quota": {"per_phase": 2, "count_failed": count_failed}}})
    _end(contest, _submit(contest, 10.0).id, status="failed")
    _end(contest, _submit(contest, 20.0).id)
    if count_failed:
        with pytest.raises(QuotaExceeded) as refused:
            _submit(contest, 30.0)
        assert "all 2 submissions of the leaderboard phase" in str(refused.value)
    else:
        _end(contest, _submit(contest, 30.0).id)
        with pytest.raises(QuotaExceeded):
            _submit(contest, 40.0)


def test_quotas_are_per_team_and_the_total_quota_counts_everything(offline_contest):
    contest = offline_contest
    from contestkit.server.contest.teams import add_team

    _configure(contest, phases={"leaderboard": {"quota": {"total": 1}}})
    _end(contest, _submit(contest, 10.0).id)
    with pytest.raises(QuotaExceeded, match="all 1 submissions of this contest"):
        _submit(contest, 20.0)
    add_team(contest.data_dir, name="beta", email="beta@example.org", password="a long password")
    with contest.database.session() as db:
        beta = teams.find_team(db, "beta").id
    assert operations.start_job(contest.database, contest.config, beta, "v1", clock=lambda: 20.0).status == "queued"


def test_one_running_job_per_team_stays_inside_the_window(offline_contest):
    contest = offline_contest
    first = _submit(contest, 10.0)
    with pytest.raises(Exception, match=f"already has job {first.id} queued"):
        _submit(contest, 11.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"phases": {"leaderboard": {"opens": "tomorrow"}}}, "phases.leaderboard.opens 'tomorrow' is not a time"),
        ({"phases": {"leaderboard": {"opens": "2018-06-05T00:00:00Z", "closes": "2018-04-05"}}}, "must be after"),
        ({"phases": {"leaderboard": {"quota": {"per_day": 0}}}}, "per_day must be a whole number of at least 1"),
        ({"phases": {"leaderboard": {"quota": {"per_week": 3}}}}, "unknown key 'per_week'"),
        ({"phases": {"final": {"priority": 3}}}, "phases.final needs 'levels'"),
        ({"phases": {"warmup": {}}}, "unknown key 'warmup'"),
        ({"ranking": "fastest"}, "ranking must be 'latest' or 'best'"),
        ({"phases": "soon"}, "key 'phases' must be a mapping of settings, e.g. `phases: {leaderboard: "),
    ],
)
def test_mistakes_in_the_plan_are_one_sentence_at_load(tmp_path: Path, init_contest, settings, message):
    data_dir = init_contest(tmp_path, [("Fake", "Level1")])
    path = data_dir / "server.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(settings)
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(UsageError, match=message):
        load_config(data_dir)
