"""The Kubernetes executor's lifecycle, against an in-process FAKE of the Kubernetes API.

This is a fake, not a cluster: no Kubernetes API server or kubelet can run on the machines these
tests run on (no such packages in the registries they reach). ``FakeCluster`` (tests/k8s/conftest.py)
answers exactly the client calls the executor makes and validates every Job it is given against the
official Kubernetes 1.30 schema; each test scripts what the kubelet would report. The env
container's output is produced by the real ``contestkit.runs.structured_log`` code, and the results are
summarised by the real ``contestkit.runs.evaluation`` code, so what lands in the level's directory is what
a real pod's log would give. What is NOT covered here, because it needs a real cluster: scheduling,
image pulls, NetworkPolicy enforcement by the CNI, real log streaming over HTTP.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from contestkit.errors import ContestkitError
from contestkit.runs import results
from contestkit.runs.curves import write_level_curve
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx
from contestkit.server.executors.kubernetes_settings import KubernetesSettings
from tests.support.k8s import Follow

AGENT, ENV = kr.AGENT_CONTAINER, kr.ENV_CONTAINER


def _finish_env(cluster: Any, pod: str, lines: list[str], code: int = 0) -> None:
    cluster.print(pod, ENV, *lines)
    cluster.end(pod, ENV, code)


def test_success_progress_and_results_like_docker(cluster, executor, make_task, env_lines, progress) -> None:
    task = make_task()
    run = executor.start(task)
    assert cluster.policies, "the deny-all NetworkPolicy is created at start when missing"
    job = cluster.wait_job()
    assert job == "ck-j7-a1-l0"
    pod = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(pod)
    cluster.print(pod, AGENT, "agent says hello")
    cluster.print(pod, ENV, "serving Airstriker-Genesis Level1", progress(400, episodes=1))
    follow.wait_progress(400)
    assert follow.progress[-1].eta_seconds == pytest.approx(1.2)  # (1000 - 400) / 500 steps/s

    lines, scratch = env_lines(end_reason="timestep-budget", rewards=[10.0, 30.0], timesteps=1000)
    _finish_env(cluster, pod, lines)
    cluster.end(pod, AGENT, 0)
    result = follow.join()

    rd = task.results_dir
    assert result.ok and result.error is None
    assert result.score == pytest.approx(20.0) and result.episodes == 2 and result.timesteps == 1000
    for name in (results.MONITOR, results.LOG, results.ENV_STATUS):
        assert (rd / name).read_bytes() == (scratch / name).read_bytes(), name
    summary = json.loads((rd / results.SUMMARY).read_text())
    assert summary["runtime"] == "kubernetes" and summary["end_reason"] == "timestep-budget"
    assert summary["image"] == task.run.image and summary["seed"] == 0 and summary["disruptions"] == 0
    # The scheduler draws the curve after any executor; the rebuilt files are all it needs.
    assert write_level_curve(rd) is not None and (rd / results.REWARD_CURVE).read_text().startswith("<svg")
    assert "agent says hello" in (rd / results.AGENT_STDOUT).read_text()
    remote = (rd / results.REMOTE_STDOUT).read_text()
    assert "session ended: timestep-budget" in remote and kr.structured_log.PREFIX not in remote
    # The Job stays until the scheduler has recorded the level (a restart in between adopts it, never
    # runs it twice); then it is deleted at once (ttlSecondsAfterFinished is only the backstop).
    assert "ck-j7-a1-l0" in cluster.jobs
    run.recorded()
    assert cluster.jobs == {} and cluster.deletions[-1][:2] == ("ck-j7-a1-l0", "Foreground")


def test_agent_crash_is_final(cluster, executor, make_task, env_lines) -> None:
    task = make_task()
    run = executor.start(task)
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    cluster.start(pod)
    cluster.print(pod, AGENT, "Traceback (most recent call last):", "ZeroDivisionError: division by zero")
    cluster.end(pod, AGENT, 1)
    lines, _ = env_lines(end_reason="agent-disconnected", rewards=[5.0], timesteps=300)
    _finish_env(cluster, pod, lines)
    result = follow.join()
    assert not result.ok
    assert "The agent exited with status 1" in result.error and "ZeroDivisionError" in result.error
    assert result.score == pytest.approx(5.0)  # the episodes it finished still count
    assert len(cluster.created) == 1, "an agent crash is not run again"


def test_env_crash_stops_the_agent(cluster, running_level, make_task) -> None:
    task = make_task()
    run, job, pod, follow = running_level(task)
    cluster.print(pod, ENV, "Segmentation fault")
    cluster.end(pod, ENV, 139)  # no records: it died before reporting
    result = follow.join()
    assert not result.ok and "The env process exited with status 139 before reporting" in result.error
    assert "Segmentation fault" in result.error
    # The agent cannot be stopped alone in a pod: the whole Job went, its pods first (foreground).
    assert (job, "Foreground", 2) in cluster.deletions
    assert result.summary["agent_exit_status"] == kr.STOPPED_EXIT


def test_deadline_exceeded(cluster, executor, make_task, env_lines) -> None:
    task = make_task(wallclock=30.0)
    run = executor.start(task)
    job = cluster.wait_job()
    # budget + grace + the scheduling/pull allowance (the cluster's time, not the team's)
    assert cluster.jobs[job]["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 35 + 600
    pod = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(pod)
    # Kubernetes stops the pod: the env program gets SIGTERM, reports "stopped" and sends its files.
    cluster.deadline_exceeded(pod)
    lines, _ = env_lines(end_reason="stopped", rewards=[1.0], timesteps=200, error="stopped")
    _finish_env(cluster, pod, lines, code=130)
    cluster.end(pod, AGENT, 143)
    result = follow.join()
    assert not result.ok and "Kubernetes stopped the level" in result.error
    assert result.episodes == 1


def test_disruption_runs_again_without_counting(cluster, executor, make_task, env_lines, progress) -> None:
    task = make_task()
    run = executor.start(task)
    job = cluster.wait_job()
    first = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(first)
    cluster.print(first, ENV, "first pod output", progress(600, episodes=3))
    follow.wait_progress(600)
    second = cluster.disrupt(first)  # a node drain; the Job controller makes a new pod (Ignore rule)
    cluster.start(second)
    cluster.print(second, ENV, progress(100))
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=[7.0], timesteps=1000)
    _finish_env(cluster, second, lines)
    cluster.end(second, AGENT, 0)
    result = follow.join()
    assert result.ok, result.error
    assert result.score == pytest.approx(7.0) and result.summary["disruptions"] == 1
    rd = task.results_dir
    assert (rd / results.MONITOR).read_bytes() == (scratch / results.MONITOR).read_bytes()
    assert "first pod output" not in (rd / results.REMOTE_STDOUT).read_text(), "the re-run starts from scratch"
    assert len(cluster.created) == 1, "the Job controller re-ran it; the executor created nothing more"


def test_cancel_deletes_the_job_in_the_foreground(cluster, running_level, make_task) -> None:
    run, job, pod, follow = running_level(make_task(), timesteps=100)
    run.cancel()
    result = follow.join()
    assert not result.ok and result.summary["end_reason"] == "interrupted"
    assert job not in cluster.jobs and not cluster.pods
    assert cluster.deletions[0][:2] == (job, "Foreground")


def test_cancel_before_the_pod_starts(cluster, executor, make_task) -> None:
    run = executor.start(make_task())
    job = cluster.wait_job()
    with cluster.cond:  # the Job controller has not made its pod yet
        cluster.pods.clear()
    follow = Follow(run)
    time.sleep(0.2)
    run.cancel()
    follow.join()
    assert job not in cluster.jobs


def test_server_restart_adopts_the_running_job(cluster, settings, make_task, env_lines, progress) -> None:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    first_server = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    task = make_task(job_id=12, index=3, attempt=2)
    run = first_server.start(task)
    job = cluster.wait_job()
    assert job == "ck-j12-a2-l3"
    pod = cluster.pod_of(job)
    follow = Follow(run)
    cluster.start(pod)
    cluster.print(pod, ENV, progress(300))
    follow.wait_progress(300)

    first_server.release()  # the server stops: it lets go, the Job keeps running
    with pytest.raises(ContestkitError, match="adopted at its next start"):
        follow.join()
    assert job in cluster.jobs and pod in cluster.pods and not cluster.deletions

    second_server = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    assert [(r.job_id, r.index, r.attempt) for r in second_server.running()] == [(12, 3, 2)]
    adopted = second_server.adopt(make_task(job_id=12, index=3, attempt=2))
    assert adopted is not None
    follow = Follow(adopted)
    follow.wait_progress(300)  # read again from the start of the pod's log
    lines, scratch = env_lines(end_reason="timestep-budget", rewards=[3.0, 4.0], timesteps=1000)
    _finish_env(cluster, pod, lines)
    cluster.end(pod, AGENT, 0)
    result = follow.join()
    assert result.ok and result.score == pytest.approx(3.5)
    assert len(cluster.created) == 1, "adopted, not run twice"
    assert (task.results_dir / results.MONITOR).read_bytes() == (scratch / results.MONITOR).read_bytes()
    # Nothing left to adopt for another level.
    assert second_server.adopt(make_task(job_id=12, index=4, attempt=2)) is None


def test_reconcile_deletes_jobs_the_server_considers_over(cluster, executor, make_task) -> None:
    executor.start(make_task(job_id=1))
    executor.start(make_task(job_id=2))
    running = executor.running()
    assert sorted(r.job_id for r in running) == [1, 2]
    live = {2}  # the scheduler runs job 2; job 1 was cancelled while the server was down
    for level in running:
        if level.job_id not in live:
            executor.discard(level)
    assert sorted(cluster.jobs) == ["ck-j2-a1-l0"]


def test_reconcile_after_a_job_vanished(cluster, running_level, make_task, env_lines) -> None:
    run, job, pod, follow = running_level(make_task(), timesteps=200)
    cluster.delete_namespaced_job(job, cluster.namespace)  # deleted from outside the server
    # The level is not left "running" forever: the executor makes the Job again and follows it.
    new_pod = cluster.pod_of(job, exclude={pod})
    cluster.start(new_pod)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[2.0], timesteps=1000)
    _finish_env(cluster, new_pod, lines)
    cluster.end(new_pod, AGENT, 0)
    result = follow.join()
    assert result.ok and result.summary["disruptions"] == 1
    assert len(cluster.created) == 2


def test_disruptions_are_bounded(cluster, executor, make_task) -> None:
    run = executor.start(make_task())
    pod = cluster.pod_of(cluster.wait_job())
    follow = Follow(run)
    for n in range(1, executor.settings.disruption_retries + 2):
        cluster.start(pod)
        time.sleep(0.3)  # the executor follows this pod
        pod = cluster.disrupt(pod)
        deadline = time.monotonic() + 10
        while run.disruptions < n:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    result = follow.join()
    assert not result.ok and "disrupted 3 times" in result.error


def test_an_image_not_pinned_by_digest_is_refused(executor, make_task) -> None:
    unpinned = make_task(image="registry.example.org:5000/team/agent:v1")
    with pytest.raises(ContestkitError, match="not pinned by digest"):
        executor.start(unpinned)


def test_settings_refuse_unknown_keys_and_need_the_env_image() -> None:
    with pytest.raises(ContestkitError, match="unknown key 'namepsace'"):
        KubernetesSettings.from_mapping({"remote_env_image": "x", "namepsace": "a"})
    with pytest.raises(ContestkitError, match="remote_env_image"):
        KubernetesSettings.from_mapping({"namespace": "a"})
    assert KubernetesSettings.from_mapping({"remote_env_image": "x", "memory": "56g"}).memory == "56Gi"
    assert KubernetesSettings.from_mapping({"remote_env_image": "x"}).cpus is None  # the spec's, the contest's


def test_structured_lines_round_trip(tmp_path: Path) -> None:
    from contestkit.runs import structured_log as sl

    source = tmp_path / "src"
    (source / "bk2").mkdir(parents=True)
    big = bytes(range(256)) * 200  # several chunks
    (source / "bk2" / "run.bk2").write_bytes(big)
    (source / "monitor.csv").write_text("r,l,t\n1.0,2,3.0\n")
    lines: list[str] = []
    sl.Mirror(source, write=lines.append).finish()
    assert all(len(line) < 16 * 1024 for line in lines)
    target = sl.FileAssembler(tmp_path / "dst")
    records = [sl.parse(line) for line in lines]
    for record in records[:-1]:
        assert record is not None and record.kind is sl.RecordKind.FILE
        target.add(record.data)
    files = records[-1].data["files"]
    assert records[-1].kind is sl.RecordKind.END and sorted(f["path"] for f in files) == ["bk2/run.bk2", "monitor.csv"]
    assert (tmp_path / "dst" / "bk2" / "run.bk2").read_bytes() == big
    assert sl.parse("an ordinary line") is None
    # A record can never write outside the results directory.
    escape = sl.parse(sl.emit(sl.RecordKind.FILE, {"path": "../evil", "index": 0, "count": 1, "b64": ""}))
    assert target.add(escape.data) is None and not (tmp_path / "evil").exists()


def test_the_executor_from_server_yaml(cluster, tmp_path: Path) -> None:
    from types import SimpleNamespace

    config = SimpleNamespace(
        kubernetes={"remote_env_image": "r/remote-env:1", "namespace": "contest", "manage_network_policy": False},
        evaluator_username="contestkit-evaluator",
        evaluator_registry_password="pw",
        budget_grace_seconds=90.0,
        registry_scheme="https",
    )
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, "contest")
    executor = kx.executor_from_config(config, api=api)
    assert executor.grace_seconds == 90.0 and executor.registry == ("https", ("contestkit-evaluator", "pw"))
    assert not cluster.policies, "manage_network_policy: false leaves the policy to the manifests"
    with pytest.raises(ContestkitError, match="remote_env_image"):
        kx.executor_from_config(SimpleNamespace(**{**config.__dict__, "kubernetes": None}), api=api)
