"""The Docker executor (the default): each level-run is ``contestkit eval --runtime docker`` in-process.

Why: a contestant's ``contestkit eval`` and the server then run exactly the same code (the same
containers, budgets, no network for the agent, results layout), so a score at home is the score
the server gives.

Adoption: nothing of a Docker level-run survives a server restart. ``evaluate_level`` runs in the
server's process, owns the bridge between the two containers and stops them when it ends (or when
the process is killed, its containers lose their env program's peer and end), and the results it
had not yet written are gone. So ``adopt`` returns None and the scheduler runs the level again
from scratch (the queue keeps every level that had finished).
"""

from __future__ import annotations

import threading
from typing import Any

from contestkit.server.executors import LevelTask, ProgressCallback, render_videos
from contestkit.server.executors.function import FunctionExecutor
from contestkit.server.executors.pull import RegistryAccount


def run_level_in_docker(task: LevelTask, on_progress: ProgressCallback, cancel: threading.Event) -> Any:
    """Evaluate a level with ``contestkit.runs.evaluation`` (the same code as ``contestkit eval``)."""
    from contestkit.runs.evaluation import EvalRequest, evaluate_level  # deferred: the emulator loads late
    from contestkit.runtime.base import Runtime

    request = EvalRequest(run=task.run, runtime=Runtime.DOCKER, results_dir=task.results_dir)
    result = evaluate_level(request, on_progress=on_progress, cancel=cancel)
    render_videos(task.run, result.results_dir, cancel.is_set())
    return result


class DockerExecutor(FunctionExecutor):
    """Level-runs as local Docker containers, through ``contestkit.runs.evaluation.evaluate_level``."""

    name = "docker"

    def __init__(self, *, pull_with: RegistryAccount | None = None) -> None:
        super().__init__(run_level_in_docker, pull_with=pull_with)

    def reachable(self) -> tuple[bool, str]:
        from contestkit.containers import dockerengine

        if dockerengine.engine_available(timeout=1.0):
            return True, "the Docker engine answers"
        return False, f"no Docker engine answers at {dockerengine.engine_url()}"
