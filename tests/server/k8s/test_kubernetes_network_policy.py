"""The NetworkPolicy enforcement check: a probe pod labelled as a level-run tries to reach the network.

The probe's program runs for real here (against sockets on this machine). Whether a cluster's CNI
enforces NetworkPolicy cannot be seen without a cluster: the cluster below is the in-process FAKE of
the Kubernetes API (tests/support/fake_kubernetes.py), whose ``enforces_network_policy`` switch plays
the CNI. Only a real cluster verifies the enforcement itself (docs/host-kubernetes-verified.md).
"""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from contestkit.errors import UsageError
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx
from contestkit.server.executors import network_policy as npol
from contestkit.server.executors.kubernetes_settings import KubernetesSettings
from contestkit.server.queue import operations
from contestkit.server.queue.scheduling import Scheduler
from tests.support.polling import wait_until

DIGEST = "sha256:" + "c" * 64


def _probe_exit(host: str, port: int) -> int:
    done = subprocess.run([sys.executable, "-c", npol.PROBE_SCRIPT, host, str(port)], capture_output=True, timeout=60)
    return done.returncode


def test_the_probe_program_tells_reached_from_blocked() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert _probe_exit("127.0.0.1", server.getsockname()[1]) == npol.REACHED_EXIT
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: the connection is refused
        assert _probe_exit("127.0.0.1", port) == npol.BLOCKED_EXIT


@pytest.mark.parametrize("version", ["1.30.0", kubernetes_validate.latest_version()])
def test_the_probe_pod_is_valid_and_selected_by_the_level_run_policy(settings: KubernetesSettings, version) -> None:
    pod = npol.render_probe_pod(dataclasses.replace(settings, node_selector={"pool": "eval"}), "ck-network-probe-1")
    kubernetes_validate.validate(pod, version, strict=True)
    policy = kr.render_network_policy(settings)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["nodeSelector"] == {"pool": "eval"}, "probed where level-runs run"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_a_probe_target_must_be_host_and_port() -> None:
    with pytest.raises(UsageError, match="HOST:PORT"):
        KubernetesSettings.from_mapping({"remote_env_image": "r:5000/e:1", "network_probe_target": "nowhere"})
    settings = KubernetesSettings.from_mapping(
        {"remote_env_image": "r:5000/e:1", "network_probe_target": "contestkit-server.ck.svc:8000"}
    )
    assert npol.probe_target(settings) == ("contestkit-server.ck.svc", "8000")


def _executor(cluster: Any, settings: KubernetesSettings, tmp_path: Path, wait: float = 10) -> kx.KubernetesExecutor:
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    executor = kx.KubernetesExecutor(settings, api=api, grace_seconds=5.0, status_file=tmp_path / npol.STATUS_FILE)
    wait_until(lambda: executor.network.state is not npol.Enforcement.CHECKING, timeout=wait)
    return executor


def test_an_enforcing_cluster_runs_level_runs(cluster, settings, tmp_path: Path) -> None:
    executor = _executor(cluster, settings, tmp_path)  # the FAKE's "CNI" enforces (its default)
    assert executor.network.state is npol.Enforcement.ENFORCED
    assert executor.held() is None and executor.notices() == []
    assert len(cluster.bare_pods) == 1 and not cluster.pods, "one probe pod, deleted once it answered"
    assert npol.read_notice(tmp_path) is None


def test_an_unenforcing_cluster_holds_level_runs_and_keeps_jobs_queued(
    offline_contest, cluster, settings, tmp_path: Path
) -> None:
    cluster.enforces_network_policy = False  # FAKE: a CNI that accepts NetworkPolicy objects and ignores them
    executor = _executor(cluster, settings, offline_contest.config.data_dir)
    held = executor.held()
    assert held is not None and "does not enforce NetworkPolicy" in held and "allow_unenforced_network_policy" in held
    asked = []
    executor_held = executor.held
    executor.held = lambda: asked.append(1) or executor_held()  # type: ignore[method-assign]
    scheduler = Scheduler(offline_contest.database, offline_contest.config, executor, poll_seconds=0.05)
    scheduler.start()
    try:
        job_id = operations.start_job(
            offline_contest.database, offline_contest.config, offline_contest.team_id, "v1", DIGEST
        ).id
        scheduler.wake()
        wait_until(lambda: len(asked) >= 5, timeout=20)  # the claim loop looked several times
        with offline_contest.database.session() as db:
            assert operations.get_job(db, offline_contest.team_id, job_id).status == "queued"
        assert not cluster.jobs, "no level-run started"
    finally:
        scheduler.stop(timeout=10)
    assert npol.read_notice(offline_contest.config.data_dir) == held  # what `server status` shows
    assert executor.notices() == [held]  # what /host shows


def test_server_status_says_level_runs_are_held(offline_contest, cluster, settings, cli) -> None:
    data_dir = offline_contest.config.data_dir
    cluster.enforces_network_policy = False  # FAKE "CNI"
    held = _executor(cluster, settings, data_dir).held()
    config = data_dir / "server.yaml"
    text = re.sub(r"(?m)^(executor|kubernetes):.*\n", "", config.read_text())
    config.write_text(text + "executor: kubernetes\nkubernetes:\n  remote_env_image: r:5000/contestkit/remote-env:1\n")
    done = cli("server", "status", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert "does not enforce NetworkPolicy" in " ".join(done.stderr.split()), done.stderr
    assert held is not None


def test_allowed_unenforced_policy_runs_with_a_warning(cluster, settings, tmp_path: Path, make_task) -> None:
    cluster.enforces_network_policy = False  # FAKE "CNI"
    executor = _executor(cluster, dataclasses.replace(settings, allow_unenforced_network_policy=True), tmp_path)
    assert executor.held() is None
    [warning] = executor.notices()
    assert "is not enforced" in warning and "allow_unenforced_network_policy: true" in warning
    assert npol.read_notice(tmp_path) == warning
    executor.start(make_task())
    assert cluster.jobs


def test_a_probe_that_cannot_decide_holds_too(cluster, settings, tmp_path: Path) -> None:
    cluster.bare_pods_start = False  # FAKE: the probe pod stays Pending (no node, no image)
    executor = _executor(cluster, dataclasses.replace(settings, start_timeout_seconds=0.2), tmp_path, wait=40)
    held = executor.held()
    assert executor.network.state is npol.Enforcement.UNDECIDED
    assert held is not None and "cannot be shown to enforce" in held
    executor.release()
    wait_until(lambda: not cluster.pods, timeout=10)


def test_a_refused_probe_pod_cannot_decide(cluster, settings, tmp_path: Path) -> None:
    cluster.failures["create_namespaced_pod"] = [403]
    executor = _executor(cluster, settings, tmp_path)
    assert executor.network.state is npol.Enforcement.UNDECIDED and "refused" in executor.network.detail
    executor.release()


def test_the_host_page_shows_the_hold(offline_contest, cluster, settings, asgi_request, password) -> None:
    import json

    from contestkit.server.app import create_app
    from tests.support.contest_plans import configure

    configure(offline_contest, admins=["alpha@example.org"])
    cluster.enforces_network_policy = False  # FAKE "CNI"
    executor = _executor(cluster, settings, offline_contest.config.data_dir)
    app = create_app(offline_contest.data_dir, executor=executor, start_scheduler=False)
    status, _, body = asgi_request(
        app, "POST", "/rest/token", json={"email": "alpha@example.org", "password": password}
    )
    assert status == 201, body
    headers = {"Authorization": f"Bearer {json.loads(body)['token']}"}
    status, _, page = asgi_request(app, "GET", "/host", headers=headers)
    assert status == 200
    text = " ".join(page.decode().split())
    assert "Level-runs are held (jobs stay queued): the cluster does not enforce NetworkPolicy" in text
    assert "allow_unenforced_network_policy: true" in text
