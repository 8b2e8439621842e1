"""Every query the API makes is served by an index (issue 11: reads stay fast as the data grows), and
the leaderboard is not rebuilt while nothing it shows changed.

SQLite's EXPLAIN QUERY PLAN of each statement the API's routes run (recorded through the engine) must
not scan a whole table. PostgreSQL's planner prefers sequential scans on tables this small, so its
plans prove nothing here; the indexes are the same (one migration), and the statement count of a
cached leaderboard is checked on both databases."""

from __future__ import annotations

import re

from sqlalchemy import event, update

SCAN = re.compile(r"\bSCAN (teams|jobs|workers|auth_tokens)\b(?! USING (COVERING )?INDEX)")


def _seed(contest, teams: int = 8) -> None:
    from contestkit.server.admin import add_team
    from contestkit.server.db import Job

    for i in range(teams):
        add_team(contest.data_dir, name=f"t{i}", email=f"t{i}@example.org", password="a long bench password")
    for _ in range(3):
        contest.finished_job(score=5.0)
    with contest.database.session() as db:
        db.execute(update(Job).where(Job.id == 1).values(status="finished"))


def _recorder(engine):
    statements: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    return statements


def test_every_api_query_uses_an_index(offline_contest, database_url, asgi_request, password):
    from contestkit.server.app import create_app

    if not database_url.startswith("sqlite"):
        import pytest

        pytest.skip("plans are checked on SQLite (see the module's docstring); PostgreSQL runs the count test")
    _seed(offline_contest)
    app = create_app(offline_contest.data_dir, start_scheduler=False)
    database = app.state.database
    statements = _recorder(database.engine)
    status, headers, _ = asgi_request(
        app, "POST", "/rest/login", json={"email": "alpha@example.org", "password": password}
    )
    assert status == 200
    cookie = re.search(r"contestkit_session=[^;]+", headers["set-cookie"]).group(0)
    signed_in = {"cookie": cookie}
    for method, path in (
        ("GET", "/rest/user"),
        ("GET", "/rest/job/status"),
        ("GET", "/rest/job/status/all"),
        ("GET", "/rest/job/status/1"),
        ("GET", "/rest/tokens"),
        ("GET", "/rest/leaderboard"),
        ("GET", "/rest/health"),
        ("POST", "/rest/job/start"),
        ("POST", "/rest/job/kill"),
    ):
        status, _, body = asgi_request(app, method, path, json={"tag": "v2"} if method == "POST" else None,
                                       headers=signed_in)  # fmt: skip
        assert status < 500, (path, body)
    from contestkit.server import housekeeping

    housekeeping.sweep_expired(database)
    checked = 0
    with database.engine.connect() as conn:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            text = "\n".join(str(row[-1]) for row in plan)
            assert not SCAN.search(text), f"{statement}\n{text}"
            checked += 1
    assert checked >= 15
    database.dispose()


def test_the_leaderboard_is_rebuilt_only_when_a_job_finishes(offline_contest, asgi_request):
    from contestkit.server.app import create_app

    _seed(offline_contest, teams=5)
    app = create_app(offline_contest.data_dir, start_scheduler=False)
    database = app.state.database
    status, _, first = asgi_request(app, "GET", "/rest/leaderboard")
    assert status == 200
    statements = _recorder(database.engine)
    for _ in range(5):
        assert asgi_request(app, "GET", "/rest/leaderboard")[2] == first
    # Each request: the two fingerprint aggregates, nothing that reads every job.
    selects = [s for s, _ in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 10, selects
    assert all("count" in s.lower() for s in selects)
    # A job finishing elsewhere (another process, say) shows at once.
    offline_contest.finished_job(score=99.0)
    status, _, after = asgi_request(app, "GET", "/rest/leaderboard")
    assert b"99.0" in after and after != first
    database.dispose()
