"""API requests per second and threads the Kubernetes executor needs at N concurrent level-runs.

    python bench/k8s_api_load.py [--runs 500] [--seconds 20] [--poll 2.0] [--json]

Against the in-process FAKE of the Kubernetes API (tests/support/fake_kubernetes.py; no API server
can run on the development machines): N level-runs are started and followed as the scheduler
follows them (one thread each calling ``run.follow``), their pods started; then for ``--seconds`` the
requests the fake answers are counted by call, and the process's threads are counted. What counts
is the steady state of a long contest: N pods running, nobody printing much. Log streams are long
polls (one request each per container, until it ends), so they show as threads, not requests.

It runs the executor of whatever ``contestkit`` is importable, so the same script measures the code
before a change (``PYTHONPATH`` at an older checkout, which had ``ClusterApi`` in
``contestkit.server.executors.kubernetes``) and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: an older checkout can be measured


def _cluster_api() -> Any:
    try:
        from contestkit.runtime.kubernetes import ClusterApi
    except ImportError:  # before Kubernetes became a runtime
        from contestkit.server.executors.kubernetes import ClusterApi  # type: ignore[attr-defined,no-redef]
    return ClusterApi


def measure(runs: int, seconds: float, poll: float) -> dict[str, Any]:
    from contestkit.runs.levelrun import LevelRunSpec
    from contestkit.server.executors import LevelTask
    from contestkit.server.executors import kubernetes as kx
    from contestkit.server.executors.kubernetes_settings import KubernetesSettings
    from tests.support.fake_kubernetes import FakeCluster

    cluster = FakeCluster()
    settings = KubernetesSettings.from_mapping(
        {"remote_env_image": "r/remote-env:1", "namespace": "contest", "poll_seconds": poll}
    )
    api = _cluster_api()(cluster.batch, cluster.core, cluster.networking, "contest")
    executor = kx.KubernetesExecutor(settings, api=api, grace_seconds=60.0)
    threads_before = threading.active_count()
    followers: list[threading.Thread] = []
    with tempfile.TemporaryDirectory(prefix="k8s-api-load-") as tmp:
        image = "registry.example.org:5000/team/agent@sha256:" + "a" * 64
        for index in range(runs):
            spec = LevelRunSpec(game="Airstriker-Genesis", state="Level1", image=image, wallclock_limit=3600.0)
            task = LevelTask(job_id=index // 5 + 1, index=index % 5, attempt=1, team="team", run=spec,
                             results_dir=Path(tmp) / str(index))  # fmt: skip
            run = executor.start(task)
            thread = threading.Thread(target=run.follow, args=(lambda _p: None,), daemon=True)
            thread.start()
            followers.append(thread)
        for pod in list(cluster.pods):
            cluster.start(pod)
        time.sleep(max(2 * poll, 3.0))  # every run has found its pod and opened its log streams
        before = dict(cluster.requests)
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        after = dict(cluster.requests)
        threads = threading.active_count() - threads_before
        for pod in list(cluster.pods):
            for container in ("agent", "remote-env"):
                cluster.end(pod, container, 137)
        for run in list(executor._runs.values()):
            run.cancel()
        for thread in followers:
            thread.join(timeout=30)
    calls = {name: round((after.get(name, 0) - before.get(name, 0)) / elapsed, 2) for name in after}
    return {
        "runs": runs,
        "poll_seconds": poll,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(sum(calls.values()), 2),
        "by_call": {name: rate for name, rate in sorted(calls.items()) if rate},
        "threads": threads,
        "threads_per_run": round(threads / runs, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--poll", type=float, default=2.0, help="server.yaml kubernetes.poll_seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    row = measure(args.runs, args.seconds, args.poll)
    if args.json:
        print(json.dumps(row, indent=2))
    else:
        print(
            f"{row['runs']} level-runs, poll {row['poll_seconds']} s: {row['requests_per_second']} API requests/s "
            f"({', '.join(f'{k} {v}' for k, v in row['by_call'].items())}), {row['threads']} threads "
            f"({row['threads_per_run']} per level-run)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
