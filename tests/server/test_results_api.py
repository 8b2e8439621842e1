"""A job's result files through the API (``server/api/results.py``): team-scoped, no way out of the
attempt's directory. A real server process; levels evaluated by the TEST DOUBLE
``tests/server/fake_level_runner.py`` (it writes monitor.csv, summary.json and agent-stdout.txt)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from tests.support.contest import Contest

LEVELS = [("Fake", "Level1"), ("Fake", "Level2")]


@pytest.fixture(scope="module")
def contest(make_module_contest) -> Contest:
    return make_module_contest(LEVELS)


@pytest.fixture(scope="module")
def finished(contest: Contest) -> tuple[requests.Session, dict]:
    """Team A's finished job: (its session, the job)."""
    _, http = contest.team("owner")
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-20"}).json()
    done = contest.wait_job(http, job["id"])
    summary = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "summary.json"
    deadline = time.monotonic() + 10
    while not summary.exists() and time.monotonic() < deadline:  # written just after the job's end is committed
        time.sleep(0.05)
    return http, done


def test_a_team_lists_and_reads_its_jobs_results(contest: Contest, finished):
    http, job = finished
    listing = http.get(f"{contest.url}/rest/job/{job['id']}/results")
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["job"] == job["id"] and body["attempt"] == 1 and not body["truncated"]
    assert [(lv["index"], lv["task"], lv["dir"]) for lv in body["levels"]] == [
        (0, "Fake/Level1", "00-Fake-Level1"),
        (1, "Fake/Level2", "01-Fake-Level2"),
    ]
    paths = {f["path"]: f["size"] for f in body["files"]}
    for level in ("00-Fake-Level1", "01-Fake-Level2"):
        for name in ("monitor.csv", "summary.json", "agent-stdout.txt", "reward-curve.svg"):
            assert f"{level}/{name}" in paths, paths
    assert "summary.json" in paths

    attempt_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    monitor = http.get(f"{contest.url}/rest/job/{job['id']}/results/00-Fake-Level1/monitor.csv")
    assert monitor.status_code == 200
    assert monitor.content == (attempt_dir / "00-Fake-Level1" / "monitor.csv").read_bytes()
    assert monitor.headers["content-disposition"].startswith("attachment")
    assert monitor.headers["x-content-type-options"] == "nosniff"
    assert paths["00-Fake-Level1/monitor.csv"] == len(monitor.content)
    curve = http.get(f"{contest.url}/rest/job/{job['id']}/results/00-Fake-Level1/reward-curve.svg")
    assert curve.content.startswith(b"<svg") and curve.headers["content-type"] == "application/octet-stream"


def test_another_team_or_a_guessed_id_gets_the_same_404(contest: Contest, finished):
    _, job = finished
    _, other = contest.team("other")
    answers = [
        other.get(f"{contest.url}/rest/job/{job['id']}/results"),
        other.get(f"{contest.url}/rest/job/{job['id']}/results/00-Fake-Level1/monitor.csv"),
        other.get(f"{contest.url}/rest/job/{job['id'] + 1000}/results"),
        other.get(f"{contest.url}/rest/job/99999999999/results/summary.json"),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert all(a.json()["detail"].startswith("Your team has no job") for a in answers)
    assert b"Level1" not in answers[1].content
    assert requests.get(f"{contest.url}/rest/job/{job['id']}/results").status_code == 401


def test_no_path_leads_out_of_the_attempt_directory(contest: Contest, finished):
    http, job = finished
    attempt_dir = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1"
    level = attempt_dir / "00-Fake-Level1"
    # What an agent could plant in its results: links to the server's secrets, a FIFO.
    os.symlink(contest.data_dir / "server.yaml", level / "planted.txt")
    os.symlink(contest.data_dir, level / "planted-dir")
    os.mkfifo(level / "pipe.txt")
    base = f"{contest.url}/rest/job/{job['id']}/results"
    for path in (
        "00-Fake-Level1/planted.txt",
        "00-Fake-Level1/planted-dir/server.yaml",
        "00-Fake-Level1/pipe.txt",
        "00-Fake-Level1/..%2F..%2F..%2F..%2Fserver.yaml",
        "..%2F..%2F..%2Fserver.yaml",
        "%2Fetc%2Fpasswd",
        "00-Fake-Level1",
        "nothing-here.txt",
    ):
        answer = http.get(f"{base}/{path}", timeout=10)
        assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
        assert b"registry" not in answer.content and b"root:" not in answer.content
    listed = {f["path"] for f in http.get(base).json()["files"]}
    assert not any("planted" in p or "pipe" in p for p in listed), listed
    for attempt in (0, 2):
        assert http.get(base, params={"attempt": attempt}).status_code == 404


def test_any_name_an_agent_writes_downloads_and_no_download_leaves_a_file_open(contest: Contest, finished):
    """A non-Latin-1 name was a 500 that left the file open; a client hanging up mid-download left
        one descriptor open each time. The server process's /proc/<pid>/fd (what it sees as /proc/self/fd)
    returns to its baseline: no result file open, no more sockets than before."""
    import socket
    from urllib.parse import quote

    from tests.support.descriptors import descriptor_targets, wait_for_descriptors

    http, job = finished
    level = contest.data_dir / "jobs" / str(job["id"]) / "attempt-1" / "00-Fake-Level1"
    (level / "uü名.txt").write_text("unicode name\n")
    (level / "big.bin").write_bytes(os.urandom(1 << 16) * 128)  # 8 MiB: more than the sockets buffer
    base = f"{contest.url}/rest/job/{job['id']}/results/00-Fake-Level1"
    pid = contest.server.proc.pid
    assert http.get(f"{base}/monitor.csv").status_code == 200  # warm: connections and threads exist

    def sockets(targets: list[str]) -> int:
        return sum(t.startswith("socket:") for t in targets)

    def results_files(targets: list[str]) -> list[str]:  # the database's own files are pooled, not leaked
        return [t for t in targets if t.startswith(str(level))]

    baseline = sockets(descriptor_targets(pid))

    for _ in range(40):
        answer = http.get(f"{base}/{quote('uü名.txt')}")
        assert answer.status_code == 200, answer.text
        assert answer.content == b"unicode name\n"
        disposition = answer.headers["content-disposition"]
        assert disposition == "attachment; filename=\"u__.txt\"; filename*=UTF-8''u%C3%BC%E5%90%8D.txt"

    cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())

    def request(name: str) -> bytes:
        return (f"GET /rest/job/{job['id']}/results/00-Fake-Level1/{name} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n").encode()  # fmt: skip

    for _ in range(50):  # hang up mid-way through a large file
        with socket.create_connection(("127.0.0.1", contest.server.port), timeout=10) as sock:
            sock.sendall(request("big.bin"))
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    for _ in range(50):  # hang up right after asking (the probe's agent-stdout.txt case)
        with socket.create_connection(("127.0.0.1", contest.server.port), timeout=10) as sock:
            sock.sendall(request("agent-stdout.txt"))
    left = wait_for_descriptors(pid, lambda t: not results_files(t) and sockets(t) <= baseline)
    assert results_files(left) == [] and sockets(left) <= baseline, left
    assert http.get(f"{base}/monitor.csv").status_code == 200  # and the server still answers


def test_open_result_opens_regular_files_only_without_following_links(tmp_path):
    from contestkit.server.api.results import open_result

    root = tmp_path / "attempt-1"
    (root / "level").mkdir(parents=True)
    (root / "level" / "monitor.csv").write_text("r,l,t\n")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "level" / "link.txt")
    os.symlink(tmp_path, root / "up")
    fd = open_result(root, "level/monitor.csv")
    assert fd is not None
    with os.fdopen(fd, "rb") as fh:
        assert fh.read() == b"r,l,t\n"
    for path in ("level/link.txt", "up/secret.txt", "../secret.txt", "level/../../secret.txt", "/etc/passwd",
                 "level", "", "level/missing.csv"):  # fmt: skip
        assert open_result(root, path) is None, path
