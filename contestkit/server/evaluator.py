"""The one call through which the server evaluates a level, and the image pull before it.

The job queue never talks to an emulator or a container itself: it calls a *level runner*,

    runner(task: LevelTask, on_progress: Callable[[progress], None], cancel: threading.Event) -> result

where ``progress`` has ``timesteps``, ``timestep_limit``, ``episodes``, ``elapsed``, ``eta_seconds`` and
``result`` has ``score``, ``episodes``, ``timesteps``, ``ok``, ``error``, ``summary`` (attributes, read
with ``getattr`` so any object with them will do). The default runner is contestkit's own
``contestkit.evaluation.evaluate_level`` with the Docker runtime, i.e. exactly what
``contestkit eval --runtime docker`` runs on a contestant's machine. A host can plug in another one
with ``evaluator: MODULE:FUNCTION`` in ``server.yaml`` (the tests plug in a small in-process runner).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contestkit.errors import ContestkitError


@dataclass(frozen=True)
class LevelTask:
    """Everything a level runner needs to evaluate one level of one job."""

    job_id: int
    index: int
    game: str
    state: str
    image: str
    runtime: str
    timestep_limit: int
    wallclock_limit: float
    seed: int
    record: bool
    results_dir: Path
    cpuset: str | None = None  # CPUs of its own (server.yaml cpusets), or None


ProgressCallback = Callable[[Any], None]
LevelRunner = Callable[[LevelTask, ProgressCallback, threading.Event], Any]


def contestkit_level_runner(task: LevelTask, on_progress: ProgressCallback, cancel: threading.Event) -> Any:
    """Evaluate a level with ``contestkit.evaluation`` (the same code as ``contestkit eval``)."""
    from contestkit.evaluation import EvalRequest, evaluate_level  # deferred: the emulator loads late
    from contestkit.levelrun import LevelRunSpec

    run = LevelRunSpec(
        game=task.game,
        state=task.state,
        image=task.image,
        timestep_limit=task.timestep_limit,
        wallclock_limit=task.wallclock_limit,
        seed=task.seed,
        record=task.record,
        cpuset=task.cpuset,
    )
    request = EvalRequest(run=run, runtime=task.runtime, results_dir=task.results_dir)
    return evaluate_level(request, on_progress=on_progress, cancel=cancel)


def load_level_runner(spec: str | None) -> LevelRunner:
    """The configured runner: ``MODULE:FUNCTION`` from server.yaml, or contestkit's own."""
    if not spec:
        return contestkit_level_runner
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        runner = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ContestkitError(
            f"The evaluator '{spec}' in server.yaml cannot be loaded ({exc}); fix the 'evaluator' key "
            "or remove it to use contestkit's own."
        ) from None
    if not callable(runner):
        raise ContestkitError(f"The evaluator '{spec}' in server.yaml is not a function.")
    return runner  # type: ignore[no-any-return]


def pull_image(image: str, *, username: str, password: str) -> str:
    """Pull a team's image with the evaluator's registry account; returns its ``repo@sha256:`` reference.

    Evaluating by digest means every level (and a resumed job after a restart) runs the very image
    that was pulled, even if the team pushes the same tag again meanwhile.
    """
    from docker.errors import APIError, ImageNotFound

    from contestkit import dockerengine

    client = dockerengine.client()
    repository, tag = _split(image)
    try:
        client.api.pull(repository, tag=tag, auth_config={"username": username, "password": password})
        pulled = client.images.get(image)
    except ImageNotFound:
        raise ContestkitError(f"The image {image} was not found after pulling it.") from None
    except APIError as exc:
        reason = exc.explanation or str(exc)
        if "not found" in str(reason).lower() or "manifest unknown" in str(reason).lower():
            raise ContestkitError(
                f"The image {image} is not in the registry; push it first (`contestkit push`)."
            ) from None
        raise ContestkitError(f"Pulling {image} failed: {reason}.") from None
    finally:
        client.close()
    base = repository
    for digest_ref in pulled.attrs.get("RepoDigests") or []:
        if digest_ref.startswith(base + "@"):
            return digest_ref
    return image


def _split(image: str) -> tuple[str, str | None]:
    """``host:port/ns/repo:tag`` or ``...@sha256:...`` into repository and tag-or-digest."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"
