"""Kubernetes as the third runtime: refusals, results that cannot be cut short, waiting that ends fast.

Against the in-process FAKE of the Kubernetes API (tests/server/k8s/conftest.py): no API server can
run on these machines. The fake is strict on what is tested here as a real cluster is: log lines carry
the kubelet's nanosecond timestamps and ``sinceTime`` takes whole seconds; only the current log file
is served (rotation at 10 MiB); a deleted pod gets a ``deletionTimestamp`` and, without a
DisruptionTarget condition, fails its Job through the podFailurePolicy; a lost node never confirms a
deletion; a pod that cannot start reports waiting reasons and PodScheduled=False.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from contestkit.errors import ContestkitError
from contestkit.runs import results, structured_log
from contestkit.runs.evaluation import refuse_unhonoured
from contestkit.runs.levelrun import LevelRunSpec, default_of
from contestkit.runtime import kubernetes as kr
from contestkit.runtime.docker import DockerLauncher
from contestkit.runtime.local import LocalLauncher
from tests.support.k8s import Follow
from tests.support.paths import GAME, STATE
from tests.support.polling import wait_until

AGENT, ENV = kr.AGENT_CONTAINER, kr.ENV_CONTAINER
ROOT = Path(__file__).resolve().parents[3]

# A value away from the default for every LevelRunSpec field (the test fails when a field is added
# without one, so a new field is always declared by every launcher).
OTHER_VALUES: dict[str, Any] = {
    "state": "Level2",
    "timestep_limit": 5,
    "wallclock_limit": 9.0,
    "connect_timeout": 7.0,
    "seed": 3,
    "record": True,
    "expose_info": True,
    "agent": "agent.py",
    "project_dir": Path("/tmp/p"),
    "cpuset": "0-1",
    "env_vars": {"A": "1"},
    "image": "img@sha256:" + "b" * 64,
    "remote_image": "remote:1",
    "gpus": True,
    "cpus": 2.0,
    "memory": "2g",
    "bridge_tmpfs_size": "32m",
    "pids_limit": 64,
    "log_limit": 4096,
    "out_limit": 2**30,
}


@pytest.mark.parametrize("launcher", [LocalLauncher(), DockerLauncher(), kr.KubernetesLauncher])
def test_every_field_is_honoured_or_refused_by_every_launcher(launcher: Any) -> None:
    names = {f.name for f in dataclasses.fields(LevelRunSpec)} - {"game"}
    assert names == set(OTHER_VALUES), "a new LevelRunSpec field needs a value here and a declaration per launcher"
    base = LevelRunSpec(game="Airstriker-Genesis")
    for name, value in OTHER_VALUES.items():
        field = next(f for f in dataclasses.fields(LevelRunSpec) if f.name == name)
        assert value != default_of(field)
        spec = base.replace(**{name: value})
        if name in launcher.honours:
            refuse_unhonoured(launcher, spec)
        else:
            with pytest.raises(ContestkitError) as caught:
                refuse_unhonoured(launcher, spec)
            message = str(caught.value)
            flag = "--" + name.replace("_", "-")
            assert flag in message and launcher.name in message and message.count(".") <= 1 + flag.count(".")


def test_cpuset_is_refused_on_kubernetes_not_ignored(executor, make_task) -> None:
    with pytest.raises(ContestkitError, match="kubernetes runtime cannot honour --cpuset"):
        executor.start(make_task(cpuset="0"))  # CPU 0: every machine has it


def test_one_lifecycle_for_every_runtime() -> None:
    for path in (ROOT / "contestkit").rglob("*.py"):
        if path.name == "evaluation.py" and path.parent.name == "runs":
            continue
        text = path.read_text()
        assert "watch_session" not in text and "summarize_level" not in text, path
    lines = (ROOT / "contestkit" / "server" / "executors" / "kubernetes.py").read_text().count("\n")
    assert lines < 400


def _file_lines(lines: list[str], path: str) -> list[int]:
    """Indexes of the records of ``path`` among the env container's lines."""
    found = []
    for index, line in enumerate(lines):
        record = structured_log.parse(line)
        if record is not None and record.kind is structured_log.RecordKind.FILE and record.data["path"] == path:
            found.append(index)
    return found


def _big_monitor(rewards: int = 1800) -> list[float]:
    return [float(i % 97) for i in range(rewards)]


def _run_to_end(cluster, executor, task, lines: list[str], *, before_env=None) -> tuple[Any, str]:  # type: ignore[no-untyped-def]
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.start(pod)
    if before_env is not None:
        before_env(pod, len(cluster.logs.get((pod, ENV), [])))
    cluster.print(pod, ENV, *lines)
    cluster.end(pod, ENV, 0)
    cluster.end(pod, AGENT, 0)
    return follow.join(), pod


def test_a_chunk_lost_for_good_fails_the_level_and_is_never_scored(cluster, executor, make_task, env_lines) -> None:
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=_big_monitor(), timesteps=1000)
    assert (scratch / results.MONITOR).stat().st_size > 2 * structured_log.CHUNK_BYTES
    chunks = _file_lines(lines, results.MONITOR)

    def lose_chunk_zero(pod: str, offset: int) -> None:
        cluster.lost[(pod, ENV)] = {offset + chunks[0]}  # the line never reached the log file

    task = make_task()
    result, _ = _run_to_end(cluster, executor, task, lines, before_env=lose_chunk_zero)
    assert not result.ok and result.score is None
    assert result.summary["infrastructure_failure"] == "cluster"
    assert "monitor.csv" in result.error and "gap" in result.error and "not scored" in result.error
    assert not (task.results_dir / results.MONITOR).exists(), "a file missing its first chunk is never written"


def test_a_chunk_missed_once_is_read_again_from_where_it_broke(cluster, executor, make_task, env_lines) -> None:
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=_big_monitor(), timesteps=1000)
    chunks = _file_lines(lines, results.MONITOR)

    def miss_once(pod: str, offset: int) -> None:
        cluster.skip_once[(pod, ENV)] = {offset + chunks[1]}

    task = make_task()
    result, pod = _run_to_end(cluster, executor, task, lines, before_env=miss_once)
    assert result.ok, result.error
    assert (task.results_dir / results.MONITOR).read_bytes() == (scratch / results.MONITOR).read_bytes()
    reads = [r for r in cluster.log_requests if r["container"] == ENV]
    assert len(reads) >= 2 and "since_time" in reads[-1], "read again with sinceTime, not from the start"
    assert all(r["timestamps"] is True and r["_request_timeout"][1] > 0 for r in reads)


def test_a_broken_stream_resumes_without_duplicating_output(cluster, executor, make_task, env_lines) -> None:
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=_big_monitor(), timesteps=1000)
    chunks = _file_lines(lines, results.MONITOR)

    def break_mid_file(pod: str, offset: int) -> None:
        cluster.breaks[(pod, ENV)] = 1
        cluster.break_at[(pod, ENV)] = {offset + chunks[2]}

    task = make_task()
    result, _ = _run_to_end(cluster, executor, task, lines, before_env=break_mid_file)
    assert result.ok, result.error
    assert (task.results_dir / results.MONITOR).read_bytes() == (scratch / results.MONITOR).read_bytes()
    remote = (task.results_dir / results.REMOTE_STDOUT).read_text()
    assert remote.count("session ended: timestep-budget") == 1


def test_no_end_record_is_an_infrastructure_failure(cluster, executor, make_task, env_lines) -> None:
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[1.0, 2.0], timesteps=1000)
    assert structured_log.parse(lines[-1]).kind is structured_log.RecordKind.END
    task = make_task()
    result, _ = _run_to_end(cluster, executor, task, lines[:-1])
    assert not result.ok and result.score is None
    assert "end record" in result.error and result.summary["infrastructure_failure"] == "cluster"


def test_a_size_or_hash_mismatch_is_refused(tmp_path: Path) -> None:
    data = b"r,l,t\n" + b"1.0,2,3.0\n" * 2000
    entry = {"path": "monitor.csv", "size": len(data), "sha256": hashlib.sha256(b"other").hexdigest()}
    import base64

    assembler = structured_log.FileAssembler(tmp_path)
    with pytest.raises(structured_log.IntegrityError, match="monitor.csv"):
        assembler.add({**entry, "index": 0, "count": 1, "b64": base64.b64encode(data).decode()})
    assert not (tmp_path / "monitor.csv").exists()


def test_the_largest_results_stay_under_the_kubelet_log_limit(cluster, executor, make_task, env_lines) -> None:
    """A 12-hour level's progress lines plus results at the budget (recordings included) fit in 10 MiB;
    a recording past the budget is omitted and named, never a file that scores."""
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=_big_monitor(), timesteps=1000)
    (scratch / "bk2").mkdir()
    (scratch / "bk2" / "a.bk2").write_bytes(bytes(range(256)) * (structured_log.RESULTS_BUDGET // 256 - 400))
    (scratch / "bk2" / "b.bk2").write_bytes(b"x" * 300_000)  # past the budget: omitted
    records: list[str] = []
    structured_log.Mirror(scratch, write=lambda line: records.append(line.rstrip("\n"))).finish()
    progress_lines = int(12 * 3600 / structured_log.PROGRESS_INTERVAL)
    progress = [records[0]] * 0 + [
        structured_log.emit(
            structured_log.RecordKind.PROGRESS,
            {
                "timesteps": 999_999,
                "timestep_limit": 1_000_000,
                "episodes": 9999,
                "last_episode_reward": 9999.9,
                "mean_episode_reward": 9999.9,
                "timesteps_per_second": 999.9,
                "wall_seconds": 43199.9,
            },
        ).rstrip("\n")  # fmt: skip
    ] * progress_lines
    everything = progress + lines[:2] + records
    size = sum(len(line) + 1 + 36 for line in everything)
    assert size < structured_log.KUBELET_LOG_LIMIT, size
    end = json.loads(records[-1][len(structured_log.PREFIX) :])
    assert [f["path"] for f in end["files"] if f.get("omitted")] == ["bk2/b.bk2"]

    task = make_task()
    result, pod = _run_to_end(cluster, executor, task, everything)
    assert cluster.rotated_upto.get((pod, ENV), 0) == 0, "the log never rotated"
    assert result.ok, result.error
    assert (task.results_dir / "bk2" / "a.bk2").read_bytes() == (scratch / "bk2" / "a.bk2").read_bytes()
    assert not (task.results_dir / "bk2" / "b.bk2").exists()


def test_a_rotated_log_is_an_infrastructure_failure_not_a_short_file(cluster, executor, make_task, env_lines) -> None:
    lines, _ = env_lines(end_reason="timestep-budget", rewards=_big_monitor(), timesteps=1000)
    cluster.log_limit = 4096  # a kubelet rotating after 4 KiB: the first chunks are gone before a re-read
    chunks = _file_lines(lines, results.MONITOR)

    def break_at_the_end(pod: str, offset: int) -> None:
        cluster.breaks[(pod, ENV)] = 1
        cluster.break_at[(pod, ENV)] = {offset + chunks[0]}

    task = make_task()
    result, _ = _run_to_end(cluster, executor, task, lines, before_env=break_at_the_end)
    assert not result.ok and result.summary["infrastructure_failure"] == "cluster"
    assert not (task.results_dir / results.MONITOR).exists()


def test_a_stalled_stream_is_read_again_after_the_read_timeout(cluster, make_executor, make_task, env_lines) -> None:
    executor = make_executor()
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=[3.0], timesteps=1000)
    task = make_task()
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.start(pod)
    cluster.print(pod, ENV, "quiet for a while")
    deadline = time.monotonic() + 10
    while len([r for r in cluster.log_requests if r["container"] == ENV]) < 2:
        assert time.monotonic() < deadline, "a silent stream was never read again"
        time.sleep(0.05)
    cluster.print(pod, ENV, *lines)
    cluster.end(pod, ENV, 0)
    cluster.end(pod, AGENT, 0)
    result = follow.join()
    assert result.ok, result.error
    assert (task.results_dir / results.REMOTE_STDOUT).read_text().count("quiet for a while") == 1


# -- waiting ends fast, and is not charged to the team ---------------------------------------------------


@pytest.mark.parametrize(
    ("container", "reason", "message", "blame"),
    [
        (AGENT, "ImagePullBackOff", 'failed to pull "team/agent@sha256:aa": manifest unknown: not found', "team"),
        (AGENT, "ErrImagePull", "pull access denied: authorization failed (pull secret)", "cluster"),
        (ENV, "ImagePullBackOff", "dial tcp: registry.example.org: connection refused", "cluster"),
        (ENV, "CreateContainerConfigError", 'secret "contest-registry" not found', "cluster"),
    ],
)
def test_a_pod_that_cannot_start_ends_within_the_start_timeout(
    cluster, make_executor, make_task, container: str, reason: str, message: str, blame: str
) -> None:
    executor = make_executor(start_timeout_seconds=0.5, cluster_start_retries=0)  # retries: tested below
    task = make_task(wallclock=3600.0)
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.waiting(pod, container, reason, message)
    assert run.budget_started() is None, "no budget is charged while the pod cannot start"
    result = follow.join(timeout=20)
    assert not result.ok and reason in result.error and message.split(":")[0] in result.error
    assert result.error.count(". ") == 0 and result.error.endswith(".")
    assert result.summary["infrastructure_failure"] == blame


def test_an_unschedulable_pod_is_the_clusters_failure(cluster, make_executor, make_task) -> None:
    executor = make_executor(start_timeout_seconds=0.3, cluster_start_retries=0)
    run = executor.start(make_task())
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.unschedulable(pod, "0/3 nodes are available: 3 Insufficient cpu")
    result = follow.join(timeout=20)
    assert "Unschedulable" in result.error and "Insufficient cpu" in result.error
    assert result.summary["infrastructure_failure"] == "cluster"


def test_a_pod_the_cluster_cannot_start_is_tried_again_with_backoff_and_an_event(
    cluster, make_executor, make_task, env_lines, caplog
) -> None:
    """No node fits now (a scale-up is on its way): the level is not failed at the start timeout but
    gets a new Job after a backoff, the host's log says so, and the level then runs to its end."""
    executor = make_executor(start_timeout_seconds=0.3, cluster_start_retries=2, cluster_retry_seconds=0.2)
    run = executor.start(make_task())
    job = cluster.wait_job()
    first = cluster.pod_of(job)
    follow = Follow(run)
    with caplog.at_level(logging.WARNING, logger="contestkit.server.events"):
        cluster.unschedulable(first, "0/3 nodes are available: 3 Insufficient cpu")
        second = cluster.pod_of(job, exclude={first}, timeout=20)
    retried = [r.getMessage() for r in caplog.records if "event=level.retrying" in r.getMessage()]
    assert len(retried) == 1 and "Insufficient cpu" in retried[0] and "retry=1/2" in retried[0], retried
    cluster.start(second)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[3.0], timesteps=1000)
    cluster.print(second, ENV, *lines)
    cluster.end(second, ENV, 0)
    cluster.end(second, AGENT, 0)
    result = follow.join(timeout=20)
    assert result.ok, result.error
    assert result.score == pytest.approx(3.0) and result.summary["disruptions"] == 0


def test_the_cluster_retries_end_as_the_clusters_failure_saying_how_often(cluster, make_executor, make_task) -> None:
    executor = make_executor(start_timeout_seconds=0.2, cluster_start_retries=2, cluster_retry_seconds=0.05)
    run = executor.start(make_task())
    job = cluster.wait_job()
    follow = Follow(run)
    seen: set[str] = set()
    for _ in range(3):  # the first pod and one for each of the 2 retries, each unschedulable
        pod = cluster.pod_of(job, exclude=seen, timeout=20)
        seen.add(pod)
        cluster.unschedulable(pod, "0/3 nodes are available: 3 Insufficient memory")
    result = follow.join(timeout=30)
    assert not result.ok and "(3 tries)" in result.error and "Insufficient memory" in result.error
    assert result.summary["infrastructure_failure"] == "cluster" and result.summary["cluster_retries"] == 2


def test_the_teams_own_image_is_not_retried(cluster, make_executor, make_task) -> None:
    """A tag that does not exist is the team's: trying it again would only make the team wait."""
    executor = make_executor(start_timeout_seconds=0.3, cluster_start_retries=3, cluster_retry_seconds=0.05)
    run = executor.start(make_task())
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.waiting(pod, AGENT, "ImagePullBackOff", 'failed to pull "team/agent@sha256:aa": manifest unknown')
    result = follow.join(timeout=20)
    assert not result.ok and result.summary["infrastructure_failure"] == "team"
    assert result.summary["cluster_retries"] == 0 and "tries" not in result.error


def test_a_cancel_ends_the_backoff_at_once(cluster, make_executor, make_task) -> None:
    executor = make_executor(start_timeout_seconds=0.2, cluster_start_retries=1, cluster_retry_seconds=3600)
    run = executor.start(make_task())
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.unschedulable(pod, "0/3 nodes are available: 3 Insufficient cpu")
    wait_until(lambda: run.launcher.cluster_retries == 1, timeout=20, message="the first retry's backoff")
    run.cancel()
    follow.join(timeout=20)  # an hour's backoff would time this out
    assert run.cancelled


def test_an_admission_refusal_is_one_sentence_with_the_clusters_reason(cluster, executor, make_task) -> None:
    cluster.refusal = (403, 'pods "x" is forbidden: violates PodSecurity "baseline:latest": privileged')
    with pytest.raises(ContestkitError, match='Kubernetes refused the Job ck-j7-a1-l0: pods "x" is forbidden'):
        executor.start(make_task())


def test_the_budget_starts_when_both_containers_run(cluster, executor, make_task, env_lines) -> None:
    run = executor.start(make_task())
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    time.sleep(0.2)  # polls until the session looked at the pending pod
    assert run.budget_started() is None
    cluster.start(pod)
    deadline = time.monotonic() + 10
    while run.budget_started() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[1.0], timesteps=1000)
    cluster.print(pod, ENV, *lines)
    cluster.end(pod, ENV, 0)
    cluster.end(pod, AGENT, 0)
    assert follow.join().ok


def test_a_plain_pod_deletion_runs_the_level_again(cluster, executor, make_task, env_lines) -> None:
    task = make_task()
    run = executor.start(task)
    job = cluster.wait_job()
    first = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(first)
    cluster.delete_namespaced_pod(first, "contest")  # kubectl delete pod: no DisruptionTarget, the Job fails
    second = cluster.pod_of(job, exclude={first}, timeout=20)
    cluster.start(second)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[4.0], timesteps=1000)
    cluster.print(second, ENV, *lines)
    cluster.end(second, ENV, 0)
    cluster.end(second, AGENT, 0)
    result = follow.join()
    assert result.ok, result.error
    assert result.summary["disruptions"] == 1 and result.score == pytest.approx(4.0)


def test_a_pod_stuck_terminating_on_a_lost_node_is_run_again(cluster, make_executor, make_task, env_lines) -> None:
    executor = make_executor(terminating_grace_seconds=0.3)
    run = executor.start(make_task())
    job = cluster.wait_job()
    first = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(first)
    cluster.lose_node(first)  # stays Terminating: nobody confirms the end
    second = cluster.pod_of(job, exclude={first}, timeout=20)
    cluster.start(second)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[2.0], timesteps=1000)
    cluster.print(second, ENV, *lines)
    cluster.end(second, ENV, 0)
    cluster.end(second, AGENT, 0)
    result = follow.join()
    assert result.ok and result.summary["disruptions"] == 1


def test_api_errors_do_not_end_a_level(cluster, executor, make_task, env_lines) -> None:
    cluster.failures["list_namespaced_pod"] = [429, 503, 500, TimeoutError("timed out")]
    cluster.failures["read_namespaced_pod_log"] = [503]
    task = make_task()
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[5.0], timesteps=1000)
    result, _ = _run_to_end(cluster, executor, task, lines)
    assert result.ok, result.error
    assert not cluster.failures["list_namespaced_pod"], "every injected error was answered"


def test_a_rerun_gets_a_fresh_watchdog() -> None:
    """The scheduler's watchdog counts from the current attempt's budget start, not the first start."""
    from contestkit.server.queue.scheduling import _LevelWatch

    class Run:
        began: float | None = None
        cancelled = False

        def budget_started(self) -> float | None:
            return self.began

    run = Run()
    watch = _LevelWatch(run=run, budget=100.0)  # type: ignore[arg-type]
    assert watch.deadline_now() == float("inf"), "no deadline while the pod waits for a node or a pull"
    run.began = 1000.0
    assert watch.deadline_now() == 1100.0
    run.began = 5000.0  # re-run after a drain
    assert watch.deadline_now() == 5100.0


def test_a_recorded_level_gets_its_videos_as_on_docker(cluster, executor, make_task, env_lines, cli, tmp_path) -> None:
    """record: true on Kubernetes: the .bk2 recordings come back through the pod log (a real recording,
    made by the emulator here) and the server renders the best and last episode, as for Docker."""
    recorded = tmp_path / "rec"
    made = cli("eval", GAME, STATE, "--runtime", "local", "--timestep-limit", "120", "--record", "--no-video",
               "--results-dir", str(recorded), "--quiet", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    task = make_task(record=True)
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.start(pod)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[1.0, 2.0], timesteps=120, bk2=recorded / "bk2")
    cluster.print(pod, ENV, *lines)
    cluster.end(pod, ENV, 0)
    cluster.end(pod, AGENT, 0)
    result = follow.join(timeout=60)
    assert result.ok, result.error
    assert sorted(p.name for p in (task.results_dir / "bk2").iterdir()) == sorted(
        p.name for p in (recorded / "bk2").iterdir()
    )
    videos = sorted(task.results_dir.rglob("*.mp4"))
    assert videos and all(v.stat().st_size > 0 for v in videos), list(task.results_dir.rglob("*"))
