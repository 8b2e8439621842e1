"""``contestkit server run --workers N``: the API in N processes, the core (scheduler, sweeper) once.

The multi-process tests run the real CLI (two API worker processes around one parent) on SQLite and
PostgreSQL; each client request opens a new connection, so the kernel hands requests to either
worker. The parts that make the processes agree (doorbell, write mark, published status, pool
shares, the default worker count) are also tested on their own, in-process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from pathlib import Path

import pytest
import requests

from contestkit.errors import UsageError
from contestkit.server import core_status
from contestkit.server.contest import boardcache
from contestkit.server.errors import Overloaded
from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.queue.doorbell import Doorbell, SchedulerLink, address
from contestkit.server.security.auth import HashPool
from contestkit.server.serving import check_workers, cpu_quota, default_workers
from contestkit.server.storage.writemark import WriteMark
from tests.support.commands import run_cli, subprocess_env
from tests.support.polling import wait_until

LEVELS = [("Airstriker-Genesis", "Level1"), ("Airstriker-Genesis", "Level2")]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":  # field 4: ppid; zombies hold nothing
                found.append(int(entry.name))
    return found


def _api_workers(pid: int) -> list[int]:
    """The server's uvicorn worker processes (multiprocessing's spawned children, not its resource tracker)."""
    return [
        child
        for child in _children(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
    ]


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def test_two_workers_run_each_job_once_and_agree_on_board_metrics_and_health(make_contest, database_url, tmp_path):
    run_log = tmp_path / "runs.log"
    contest = make_contest(
        LEVELS, database_url=database_url, workers=2, env=subprocess_env(CK_FAKE_RUN_LOG=str(run_log))
    )
    parent = contest.server.proc.pid
    workers = _api_workers(parent)
    assert len(workers) == 2, (workers, contest.server.log())

    # Both workers cache the empty board first, so a stale cache would show below.
    for _ in range(8):
        assert requests.get(contest.url + "/rest/leaderboard", timeout=10).json()["leaderboard"] == []
    name, http = contest.team()
    job = http.post(contest.url + "/rest/job/start", json={"tag": "score-7"}, timeout=30).json()
    doc = contest.wait_job(http, job["id"])
    assert doc["status"] == "finished" and doc["attempt"] == 1, doc

    # The scheduler ran in the parent only: each level once.
    runs = run_log.read_text().splitlines()
    assert sorted(line.split()[2] for line in runs) == ["Level1", "Level2"], runs
    # The finish was written by the parent; every worker shows it at once (the shared write mark),
    # not a recheck interval later: fresh connections, so both workers answer some of these.
    for _ in range(8):
        board = requests.get(contest.url + "/rest/leaderboard", timeout=10).json()["leaderboard"]
        assert [entry["name"] for entry in board] == [name]
    # /metrics adds up every process: the level-runs ended in the parent, the requests in the workers.
    for _ in range(4):
        text = requests.get(contest.url + "/metrics", timeout=10).text
        ended = re.search(r'^contestkit_level_run_duration_seconds_count\{outcome="finished"\} (\S+)$', text, re.M)
        assert ended is not None and float(ended.group(1)) == 2.0, text[:2000]
        start_route = r'method="POST",route="/rest/job/start",status="201"'
        starts = re.search(r"^contestkit_http_requests_total\{" + start_route + r"\} (\S+)$", text, re.M)
        assert starts is not None and float(starts.group(1)) == 1.0
    health = requests.get(contest.url + "/rest/health", timeout=10).json()
    assert health["ok"] and health["executor"]["name"] == "function" and health["executor"]["ok"], health

    # A crash of the parent (SIGKILL) takes the workers with it: none keeps the port.
    os.kill(parent, signal.SIGKILL)
    contest.server.proc.wait(10)
    wait_until(lambda: not any(_alive(worker) for worker in workers), timeout=20, message="the workers to end")


def test_a_stopped_server_stops_its_workers_and_requeues_nothing_twice(make_contest):
    contest = make_contest(LEVELS, workers=2)
    parent = contest.server.proc.pid
    workers = _api_workers(parent)
    assert contest.server.stop() == 0, contest.server.log()
    assert not any(_alive(worker) for worker in workers)


def test_workers_out_of_range_are_one_sentence(tmp_path):
    result = run_cli("server", "run", "--data-dir", str(tmp_path), "--workers", "0")
    assert result.returncode != 0
    assert "--workers must be between 1 and 64" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -- the parts, in-process --


def test_the_doorbell_wakes_its_own_scheduler_only(tmp_path):
    rang, other = threading.Event(), threading.Event()
    bell = Doorbell(tmp_path / "a", rang.set).start()
    other_bell = Doorbell(tmp_path / "b", other.set).start()
    try:
        SchedulerLink(tmp_path / "a", FunctionExecutor(lambda *a: None)).wake()
        assert rang.wait(5)
        assert not other.wait(0.2)
        with pytest.raises(OSError):  # one listener per data directory
            Doorbell(tmp_path / "a", rang.set)
    finally:
        bell.stop()
        other_bell.stop()
    SchedulerLink(tmp_path / "a", FunctionExecutor(lambda *a: None)).wake()  # nobody listening: no error
    assert address(tmp_path / "a") != address(tmp_path / "b")


def test_a_datagram_only_ever_means_look(tmp_path):
    calls = []
    bell = Doorbell(tmp_path, lambda: calls.append(1)).start()
    try:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender.sendto(b"cancel 1; drop table jobs" * 10, address(tmp_path))
        wait_until(lambda: calls, timeout=5, message="the wake")
    finally:
        bell.stop()
    assert calls == [1]


def test_the_write_mark_moves_for_every_mapping(tmp_path):
    writer, reader = WriteMark(tmp_path), WriteMark(tmp_path)  # two processes' mappings of one file
    before = reader.read()
    writer.move()
    assert reader.read() != before
    seen = reader.read()
    assert reader.read() == seen
    writer.close()
    reader.close()


def test_a_commit_in_one_mapping_moves_writes_version_everywhere(tmp_path):
    boardcache.share_writes(tmp_path)
    before = boardcache.writes_version()
    WriteMark(tmp_path).move()  # another process's commit
    assert boardcache.writes_version() != before


class _RegistryUp:
    """Stands in for RegistryProbe (no registry runs in these in-process tests)."""

    def check(self) -> tuple[bool, str]:
        return True, "the registry answers"


def test_a_silent_core_reads_as_unreachable(tmp_path):
    status = core_status.CoreStatus(tmp_path)
    view, registry = core_status.PublishedExecutor(status), core_status.PublishedRegistryProbe(status)
    ok, detail = view.reachable()
    assert not ok and "never reported" in detail
    assert registry.check()[0] is False
    document = core_status.snapshot(FunctionExecutor(lambda *a: None), _RegistryUp(), None)
    document["written_at"] -= core_status.STALE_SECONDS + 5
    core_status.write(tmp_path, document)
    ok, detail = view.reachable()  # the same view sees the file replaced
    assert not ok and "not reported for" in detail
    core_status.write(tmp_path, core_status.snapshot(FunctionExecutor(lambda *a: None), _RegistryUp(), None))
    assert view.reachable()[0] and registry.check() == (True, "the registry answers")
    assert core_status.PublishedExecutor(status).name == "function"
    assert status.section("registry")["supervised"] is False


def test_worker_counts_and_shares(tmp_path, monkeypatch):
    monkeypatch.setattr("contestkit.runs.cpuset.available", lambda: set(range(8)))
    assert default_workers(tmp_path) == 8
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # a 2.5-CPU limit
    assert cpu_quota(tmp_path) == 2.5 and default_workers(tmp_path) == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert default_workers(tmp_path) == 8
    assert [HashPool.shared_by(n, tmp_path / "slots").workers for n in (1, 3, 8, 16)] == [8, 3, 1, 1]


def test_the_hash_pools_places_are_the_servers(tmp_path, monkeypatch):
    """Two workers' pools share the machine's 10 places (2 CPUs): one worker may take all of them, and
    an eleventh login is refused whichever worker gets it; places come back when given back."""
    monkeypatch.setattr("contestkit.runs.cpuset.available", lambda: {0, 1})
    first, second = (HashPool.shared_by(2, tmp_path / "slots") for _ in range(2))
    try:
        assert first.workers == 1  # hashing threads: ceil(2 CPUs / 2 workers)
        held = [first.slot() for _ in range(10)]
        for place in held:
            place.__enter__()
        assert first.full() and second.full()
        with pytest.raises(Overloaded), second.slot():
            pass
        held.pop().__exit__(None, None, None)
        assert not second.full()
        with second.slot():
            assert first.full()
        for place in held:
            place.__exit__(None, None, None)
    finally:
        first.close()
        second.close()
    with pytest.raises(UsageError, match="between 1 and 64"):
        check_workers(65)
