"""The contestkit client lists a team's jobs a page at a time (issue 28: an unpaged status/all
grows with the team); the whole list is still what it shows, and the 2018 client, which never
pages, still gets every job from one request."""

from __future__ import annotations

import pytest

from contestkit.client import api_client

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]


@pytest.fixture(scope="module")
def contest(make_module_contest):  # type: ignore[no-untyped-def]
    return make_module_contest(LEVELS)


def test_every_job_a_page_at_a_time(contest, monkeypatch):
    _, http = contest.team("pager")
    ids = []
    for tag in ("v1", "v2", "v3"):
        job = http.post(contest.url + "/rest/job/start", json={"tag": tag}).json()
        contest.wait_job(http, job["id"])
        ids.append(job["id"])
    client = api_client.ContestClient(contest.url, cookies=http.cookies.get_dict())
    asked: list[str] = []
    client.http.hooks["response"].append(lambda response, *args, **kwargs: asked.append(response.url))
    monkeypatch.setattr(api_client, "JOBS_PAGE", 2)

    assert [job["id"] for job in client.jobs()] == ids[::-1]
    assert len(asked) == 2 and all("limit=2" in url for url in asked), asked
    assert f"before={ids[1]}" in asked[1]
    # The 2018 client's call (no paging) still gets every job in one answer.
    assert [job["id"] for job in http.get(contest.url + "/rest/job/status/all").json()] == ids[::-1]
