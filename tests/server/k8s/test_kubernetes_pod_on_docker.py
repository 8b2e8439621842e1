"""A whole level-run through the Kubernetes executor, its pod's containers run for real on Docker.

The API server is still a FAKE (``DockerCluster`` in conftest.py: no API server can run here), but
the pod is real: the Job the executor renders is run as Docker containers with the pod's images,
command, arguments, volumes, limits and security settings, with no network at all; the real env
program plays Airstriker under ``contestkit.runs.structured_log`` against the contest's random agent, and
the executor rebuilds the results from the containers' logs alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contestkit.runs import results, structured_log
from contestkit.runs.curves import write_level_curve
from contestkit.runs.evaluation import BUNDLED_AGENT
from contestkit.runtime import kubernetes as kr
from contestkit.server.executors import kubernetes as kx
from contestkit.server.executors.kubernetes_settings import KubernetesSettings


@pytest.mark.docker
@pytest.mark.slow
def test_a_level_run_pod_on_docker(
    tmp_path: Path, docker_api: Any, toolkit_images: dict, make_task: Any, docker_cluster: Any
) -> None:
    where = "import contestkit, os; print(os.path.dirname(contestkit.__file__))"
    package = docker_api.create_container(toolkit_images["remote-env"], entrypoint=["python", "-c", where])
    docker_api.start(package)
    docker_api.wait(package)
    site = docker_api.logs(package).decode().strip()
    docker_api.remove_container(package)
    binds = {
        # The env container runs this checkout's structured_log (the shared image may be another branch's build).
        kr.ENV_CONTAINER: {f"{site}/structured_log.py": str(Path(structured_log.__file__).resolve())},
        kr.AGENT_CONTAINER: {"/root/compo/agent.py": str(BUNDLED_AGENT)},
    }
    pinned = "registry.example.org:5000/team-rocket/agent@" + docker_api.inspect_image(toolkit_images["cpu"])["Id"]
    cluster = docker_cluster(docker_api, binds, images={pinned: toolkit_images["cpu"]})
    settings = KubernetesSettings.from_mapping(
        {
            "remote_env_image": toolkit_images["remote-env"],
            "namespace": "contest",
            "poll_seconds": 0.2,
            "cpus": 2.0,
            "env_cpu": 0.5,
            "memory": "2Gi",
            "env_memory": "2Gi",
        }  # fmt: skip
    )
    api = kr.ClusterApi(cluster.batch, cluster.core, cluster.networking, settings.namespace)
    executor = kx.KubernetesExecutor(settings, api=api, grace_seconds=30.0)
    task = make_task(image=pinned, timestep_limit=3000, wallclock=120.0)
    progress: list[Any] = []
    try:
        run = executor.start(task)
        result = run.follow(progress.append)
        run.recorded()  # the scheduler has recorded the level: now the Job goes
    finally:
        cluster.close()
    rd = task.results_dir
    assert result.ok, result.error
    # Our env image ran as a non-root user, as the Job asks; the agent as its image's user.
    assert cluster.users[kr.ENV_CONTAINER] == "1000:1000" and cluster.users[kr.AGENT_CONTAINER] is None
    assert result.timesteps == 3000 and result.episodes >= 1
    summary = json.loads((rd / results.SUMMARY).read_text())
    assert summary["end_reason"] == "timestep-budget" and summary["runtime"] == "kubernetes"
    monitor = results.read_monitor(rd / results.MONITOR)
    assert len(monitor) == result.episodes and sum(length for _, length, _ in monitor) <= 3000
    assert (rd / results.LOG).is_file() and write_level_curve(rd) is not None  # the scheduler draws it
    assert "session ended: timestep-budget" in (rd / results.REMOTE_STDOUT).read_text()
    assert structured_log.PREFIX not in (rd / results.REMOTE_STDOUT).read_text()
    assert not cluster.containers and not cluster.jobs, "the pod's containers and the Job are gone"
