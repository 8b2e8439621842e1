"""The server's own scheduler and queue running a job through the Kubernetes executor (FAKE cluster).

The scheduler, the queue and the database are the server's real ones (``offline_contest``: SQLite,
one team, two levels); the cluster is the in-process FAKE of the Kubernetes API from conftest.py (no
API server can run here).
"""

from __future__ import annotations

from typing import Any

import pytest

from contestkit.runs import results
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx
from contestkit.server.queue import operations
from contestkit.server.queue.scheduling import Scheduler
from tests.support.polling import wait_until

DIGEST = "sha256:" + "c" * 64


def _job_appears(cluster: Any, name: str) -> str:
    """The level-run Job ``name``, once the scheduler made it."""
    wait_until(lambda: name in cluster.jobs, message=f"the Job {name}")
    return name


def _job(contest: Any, job_id: int) -> dict[str, Any]:
    # Not contest.job(): tests/server/conftest.py's OfflineContest.job still imports the removed server.jobs.
    from contestkit.server.api.documents import job_document

    with contest.database.session() as db:
        return job_document(operations.get_job(db, contest.team_id, job_id))


def _job_status(contest: Any, job_id: int) -> str:
    return _job(contest, job_id)["status"]


def _run_pod_to_the_end(cluster: Any, job: str, env_lines: Any, reward: float) -> None:
    pod = cluster.pod_of(job)
    if "containerStatuses" not in cluster.pods[pod]["status"]:
        cluster.start(pod)
    lines, _ = env_lines(end_reason="timestep-budget", rewards=[reward], timesteps=1000)
    cluster.print(pod, kr.ENV_CONTAINER, *lines)
    cluster.end(pod, kr.ENV_CONTAINER, 0)
    cluster.end(pod, kr.AGENT_CONTAINER, 0)


def test_one_job_per_level_and_results_in_the_data_dir(offline_contest, cluster, settings, env_lines) -> None:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    executor = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    scheduler = Scheduler(offline_contest.database, offline_contest.config, executor, poll_seconds=0.05)
    scheduler.start()
    try:
        job_id = operations.start_job(
            offline_contest.database, offline_contest.config, offline_contest.team_id, "v1", DIGEST
        ).id
        scheduler.wake()
        for index, reward in ((0, 10.0), (1, 20.0)):
            name = _job_appears(cluster, f"ck-j{job_id}-a1-l{index}")
            assert cluster.jobs[name]["spec"]["template"]["spec"]["containers"][1]["image"].endswith("@" + DIGEST)
            _run_pod_to_the_end(cluster, name, env_lines, reward)
        wait_until(lambda: _job_status(offline_contest, job_id) == "finished", message="the job to finish")
    finally:
        scheduler.stop(timeout=10)
    document = _job(offline_contest, job_id)
    assert document["score"] == pytest.approx(15.0)
    level_dir = offline_contest.config.jobs_dir / str(job_id) / "attempt-1" / "00-Fake-Level1"
    for name in (results.MONITOR, results.LOG, results.SUMMARY, results.REWARD_CURVE, results.AGENT_STDOUT):
        assert (level_dir / name).is_file(), name
    assert len(cluster.created) == 2 and not cluster.jobs, "one Job per level, deleted once its results were in"


def test_a_restarted_server_adopts_instead_of_running_twice(
    offline_contest, cluster, settings, env_lines, monkeypatch
) -> None:
    """The Deployment's pod is replaced mid-level (a new hostname, the same CONTESTKIT_INSTANCE, as the
    manifests set it): the new server adopts the running Job, the level runs to its end once."""
    import socket

    from contestkit.server.queue import scheduling

    monkeypatch.setenv(scheduling.INSTANCE_ENV, "contestkit-server")
    monkeypatch.setattr(socket, "gethostname", lambda: "contestkit-server-7d9f-abcde")
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    first = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    scheduler = Scheduler(offline_contest.database, offline_contest.config, first, poll_seconds=0.05)
    scheduler.start()
    job_id = operations.start_job(
        offline_contest.database, offline_contest.config, offline_contest.team_id, "v1", DIGEST
    ).id
    scheduler.wake()
    name = _job_appears(cluster, f"ck-j{job_id}-a1-l0")
    cluster.start(cluster.pod_of(name))
    scheduler.stop(timeout=10)  # a graceful stop: the scheduler lets go of the runs (Executor.release)
    assert name in cluster.jobs, "a server that stops leaves its Jobs running"

    monkeypatch.setattr(socket, "gethostname", lambda: "contestkit-server-7d9f-fghij")  # the new pod
    second = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    scheduler = Scheduler(offline_contest.database, offline_contest.config, second, poll_seconds=0.05)
    scheduler.start()
    try:
        _run_pod_to_the_end(cluster, name, env_lines, 4.0)
        name1 = _job_appears(cluster, f"ck-j{job_id}-a1-l1")
        _run_pod_to_the_end(cluster, name1, env_lines, 6.0)
        wait_until(lambda: _job_status(offline_contest, job_id) == "finished", message="the job to finish")
    finally:
        scheduler.stop(timeout=10)
    assert _job(offline_contest, job_id)["score"] == pytest.approx(5.0)
    assert [job["metadata"]["name"] for job in cluster.created] == [name, name1], "adopted, not run twice"


def test_reconcile_deletes_jobs_of_jobs_that_are_over(offline_contest, cluster, settings, make_task) -> None:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    executor = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0)
    # A Job left in the cluster for job 41, which this server does not run (cancelled while it was down).
    executor.start(make_task(job_id=41))
    scheduler = Scheduler(offline_contest.database, offline_contest.config, executor, poll_seconds=0.05)
    assert scheduler.reconcile() == [41]
    assert not cluster.jobs and cluster.deletions[0][:2] == ("ck-j41-a1-l0", "Foreground")


def test_a_new_pod_of_the_deployment_is_the_same_server(tmp_path, monkeypatch) -> None:
    """The manifests set CONTESTKIT_INSTANCE to the Deployment's name: a new pod (a new hostname) keeps
    the instance, so it recovers its own jobs at once and adopts their Jobs."""
    import socket
    from types import SimpleNamespace

    from contestkit.server.queue import scheduling

    config = SimpleNamespace(data_dir=tmp_path)
    monkeypatch.setenv(scheduling.INSTANCE_ENV, "contestkit-server")
    names = set()
    for host in ("contestkit-server-7d9f-abcde", "contestkit-server-7d9f-fghij"):
        monkeypatch.setattr(socket, "gethostname", lambda host=host: host)
        names.add(scheduling.default_instance(config))  # type: ignore[arg-type]
    assert names == {f"contestkit-server:{tmp_path}"}
    from contestkit.server.deployment import manifests

    options = manifests.DeploymentOptions(registry="r:5000", levels_csv="game,state\n")
    deployment = next(d for d in manifests.render_manifests(options) if d["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": scheduling.INSTANCE_ENV, "value": deployment["metadata"]["name"]} in env


def test_reconcile_keeps_the_job_of_a_server_that_was_restarted_elsewhere(
    offline_contest, cluster, settings, monkeypatch
) -> None:
    """A server under a new hostname (no shared identity) must not delete the Job of a job another,
    recently live server runs: that server, or the one that recovers the job, adopts it by name."""
    import socket

    from contestkit.server.queue import scheduling

    monkeypatch.delenv(scheduling.INSTANCE_ENV, raising=False)
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    monkeypatch.setattr(socket, "gethostname", lambda: "contestkit-server-7d9f-abcde")
    first = Scheduler(offline_contest.database, offline_contest.config,
                      kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0), poll_seconds=0.05)  # fmt: skip
    first.start()
    job_id = operations.start_job(
        offline_contest.database, offline_contest.config, offline_contest.team_id, "v1", DIGEST
    ).id
    first.wake()
    name = _job_appears(cluster, f"ck-j{job_id}-a1-l0")
    cluster.start(cluster.pod_of(name))
    # The pod is killed mid-level: its threads record nothing more (no end, no heartbeat, no requeue).
    for method in ("level_started", "level_ended", "finish", "finish_failed", "level_progress", "requeue_mine",
                   "claim"):  # fmt: skip
        monkeypatch.setattr(first.queue, method, lambda *args, **kwargs: None)
    monkeypatch.setattr(first.queue, "heartbeat", lambda *args, **kwargs: [])
    first.executor.release()  # its runs let go of their Jobs (a dead process deletes nothing)
    first._stop.set()
    first._wake.set()

    monkeypatch.setattr(socket, "gethostname", lambda: "contestkit-server-7d9f-fghij")
    second = Scheduler(offline_contest.database, offline_contest.config,
                       kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0), poll_seconds=0.05)  # fmt: skip
    second.start()
    try:
        assert second.reconcile() == []
        assert name in cluster.jobs, "reconcile deleted a Job its job's server may still adopt"
    finally:
        second.stop(timeout=10)
        first.stop(timeout=10)
