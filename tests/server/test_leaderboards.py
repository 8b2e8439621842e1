"""Leaderboards (issue 15): latest or best, ties by earlier submission, one level's view, the freeze,
baselines, and the export matching the leaderboard; on SQLite and PostgreSQL. Times are written into
the jobs, never waited for."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from contestkit.server.config import load_config
from contestkit.server.contest import leaderboards
from contestkit.server.contest.teams import add_team, find_team
from contestkit.server.errors import NotFound
from contestkit.server.storage.db import Job, Worker


def _configure(contest, **settings) -> None:
    path = contest.data_dir / "server.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(settings)
    path.write_text(yaml.safe_dump(document))
    contest.config = load_config(contest.data_dir)


def _job(contest, team_id: int, levels: tuple[float, float], created: float, finished: float) -> int:
    """A finished job of the team with these two level scores (the job's score is their mean)."""
    with contest.database.session() as db:
        job = Job(
            team_id=team_id,
            tag="v",
            image="i",
            status="finished",
            score=sum(levels) / 2,
            created_at=created,
            queued_at=created,
            finished_at=finished,
            timestep_limit=1,
            wallclock_limit=1,
            workers=[
                Worker(idx=i, game="Fake", state=f"Level{i + 1}", status="finished", score=s)
                for i, s in enumerate(levels)
            ],
        )
        db.add(job)
        db.flush()
        return job.id


@pytest.fixture
def teams(offline_contest) -> dict[str, int]:
    contest = offline_contest
    for name in ("beta", "baseline"):
        add_team(contest.data_dir, name=name, email=f"{name}@example.org", password="a long password")
    with contest.database.session() as db:
        return {name: find_team(db, name).id for name in ("alpha", "beta", "baseline")}


def _names(board: list[dict]) -> list[tuple[str, float]]:
    return [(row["name"], row["score"]) for row in board]


def test_latest_by_default_best_when_chosen_and_ties_to_the_earlier_submission(offline_contest, teams):
    contest = offline_contest
    _job(contest, teams["alpha"], (9, 9), created=10, finished=20)
    _job(contest, teams["alpha"], (3, 3), created=30, finished=40)  # alpha's latest is worse
    _job(contest, teams["beta"], (5, 5), created=5, finished=50)
    _job(contest, teams["baseline"], (5, 5), created=1, finished=60)  # ties beta, submitted earlier
    with contest.database.session() as db:
        latest = leaderboards.public_board(db, contest.config, at=100)
    assert latest["ranking"] == "latest"
    assert _names(latest["leaderboard"]) == [("baseline", 5.0), ("beta", 5.0), ("alpha", 3.0)]
    _configure(contest, ranking="best", baselines=["baseline@example.org"])
    with contest.database.session() as db:
        best = leaderboards.public_board(db, contest.config, at=100)["leaderboard"]
    assert _names(best) == [("alpha", 9.0), ("baseline", 5.0), ("beta", 5.0)]
    assert best[1]["baseline"] is True and "baseline" not in best[0]


def test_one_levels_view_ranks_by_that_levels_score(offline_contest, teams):
    contest = offline_contest
    _job(contest, teams["alpha"], (1, 8), created=1, finished=2)
    _job(contest, teams["beta"], (6, 2), created=1, finished=2)
    with contest.database.session() as db:
        level2 = leaderboards.public_board(db, contest.config, level="Fake/Level2", at=100)
        level1 = leaderboards.public_board(db, contest.config, level="Fake/Level1", at=100)
        with pytest.raises(NotFound) as unknown:
            leaderboards.public_board(db, contest.config, level="Fake/Nope", at=100)
    assert _names(level2["leaderboard"]) == [("alpha", 8.0), ("beta", 2.0)] and level2["level"] == "Fake/Level2"
    assert _names(level1["leaderboard"]) == [("beta", 6.0), ("alpha", 1.0)]
    assert str(unknown.value) == "The leaderboard has no level 'Fake/Nope'; its levels are Fake/Level1, Fake/Level2."


def test_the_freeze_stops_the_public_board_but_not_the_teams_own_scores(offline_contest, teams):
    contest = offline_contest
    _configure(contest, freeze_at="1970-01-01T00:01:40Z")  # 100 s
    _job(contest, teams["alpha"], (4, 4), created=10, finished=50)
    late = _job(contest, teams["alpha"], (9, 9), created=60, finished=100)  # finished at the freeze: not counted
    _job(contest, teams["beta"], (6, 6), created=70, finished=120)
    with contest.database.session() as db:
        before = leaderboards.public_board(db, contest.config, at=99)
        after = leaderboards.public_board(db, contest.config, at=500)
    assert before["frozen"] is None and _names(before["leaderboard"]) == [("alpha", 9.0), ("beta", 6.0)]  # live
    assert after["frozen"] == 100.0 and _names(after["leaderboard"]) == [("alpha", 4.0)]
    assert contest.job(late)["score"] == 9.0  # the team still sees its own score
    with contest.database.session() as db:  # and the host's export is live
        live = json.loads(leaderboards.export(db, contest.config, fmt="json"))["rows"]
    assert _names(live) == [("alpha", 9.0), ("beta", 6.0)]


def test_the_export_holds_the_leaderboard_with_every_levels_score(offline_contest, teams, cli):
    contest = offline_contest
    _configure(contest, baselines=["baseline@example.org"])
    _job(contest, teams["alpha"], (2, 4), created=1, finished=2)
    _job(contest, teams["baseline"], (10, 0), created=1, finished=3)
    with contest.database.session() as db:
        board = leaderboards.public_board(db, contest.config, at=100)["leaderboard"]
    result = cli("server", "export", "--data-dir", str(contest.data_dir))
    assert result.returncode == 0, result.stderr
    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["team"], float(r["score"]), int(r["job"])) for r in table] == [
        (row["name"], row["score"], row["job"]) for row in board
    ]
    assert [r["rank"] for r in table] == ["1", "2"]
    assert table[0]["baseline"] == "yes" and table[1]["baseline"] == ""
    assert (table[0]["Fake/Level1"], table[0]["Fake/Level2"]) == ("10.0", "0.0")
    as_json = json.loads(cli("server", "export", "--format", "json", "--data-dir", str(contest.data_dir)).stdout)
    assert [(r["name"], r["score"]) for r in as_json["rows"]] == _names(board)
    assert as_json["levels"] == ["Fake/Level1", "Fake/Level2"]
