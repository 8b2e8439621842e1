"""status/all answered with ended jobs' documents kept ready (``jobdocs``): the same bytes as
building every document, never stale after a restart, one light query once warm, and bounded."""

from __future__ import annotations

import json

from sqlalchemy import event

from contestkit.server.api import documents
from contestkit.server.api.jobdocs import EndedJobDocuments
from contestkit.server.queue import operations


def _encode(job) -> bytes:  # type: ignore[no-untyped-def]
    return documents.job_json(documents.job_status(job))


def _built(contest, **paging) -> list:  # type: ignore[no-untyped-def]
    """What status/all answered before: every document built from the full rows."""
    with contest.database.session() as db:
        return [json.loads(_encode(job)) for job in operations.all_jobs(db, contest.team_id, **paging)]


def _kept(docs: EndedJobDocuments, contest, **paging) -> list:  # type: ignore[no-untyped-def]
    with contest.database.session() as db:
        return json.loads(docs.team_jobs(db, contest.team_id, **paging))


def test_same_documents_as_building_them_paged_or_not(offline_contest):
    for score in (1.0, 2.0, 3.0):
        offline_contest.finished_job(score=score)
    operations.start_job(offline_contest.database, offline_contest.config, offline_contest.team_id, "score-5")
    docs = EndedJobDocuments(_encode)
    for paging in ({}, {"limit": 2}, {"limit": 2, "before": 3}, {"before": 2}):
        first, again = _kept(docs, offline_contest, **paging), _kept(docs, offline_contest, **paging)
        assert first == again == _built(offline_contest, **paging), paging
    assert [job["status"] for job in _kept(docs, offline_contest)] == ["queued", "finished", "finished", "finished"]
    assert len(docs) == 3  # the queued job is never kept: it changes as it runs


def test_a_restarted_job_is_not_answered_from_its_kept_document(offline_contest):
    job_id = offline_contest.finished_job(score=4.0)
    docs = EndedJobDocuments(_encode)
    assert _kept(docs, offline_contest)[0]["status"] == "finished"
    operations.restart_job(offline_contest.database, offline_contest.config, offline_contest.team_id, job_id)
    (restarted,) = _kept(docs, offline_contest)
    assert (restarted["status"], restarted["attempt"]) == ("queued", 2)
    assert "score" not in restarted


def test_a_warm_list_is_one_light_query(offline_contest):
    for _ in range(3):
        offline_contest.finished_job()
    docs = EndedJobDocuments(_encode)
    _kept(docs, offline_contest)
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (before_cursor_execute's statement)
    event.listen(offline_contest.database.engine, "before_cursor_execute", listener)
    try:
        assert len(_kept(docs, offline_contest)) == 3
    finally:
        event.remove(offline_contest.database.engine, "before_cursor_execute", listener)
    assert len(statements) == 1, statements  # no full job rows, no workers
    assert "workers" not in statements[0]


def test_kept_documents_are_bounded(offline_contest):
    for _ in range(3):
        offline_contest.finished_job()
    docs = EndedJobDocuments(_encode, max_kept=2)
    assert len(_kept(docs, offline_contest)) == 3  # the answer is whole, whatever is kept
    assert len(docs) == 2
