"""TEST DOUBLE of the per-level evaluation, for the contest server and client tests.

This stays a module, not a fixture, because the server under test is a separate process
(``contestkit server run``) that imports its level runner by the dotted path in ``server.yaml``
(``evaluator: tests.server.fake_level_runner:fake_level_runner``); a fixture cannot be imported
by another process. In-process tests (``test_queue_faults.py``) import it for the same reason they
would import the real runner.

It is the only fake in those tests: the real runner runs an emulator and two containers for hours.
This one is a small real level runner in-process: it steps a fake game through the job's timestep
budget, writes ``monitor.csv`` and ``summary.json`` like the real evaluation, reports progress and
honours cancel, so the server's queue, worker, recovery and scoring code runs for real around it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeProgress:
    timesteps: int
    timestep_limit: int
    episodes: int
    elapsed: float
    eta_seconds: float | None
    mean_episode_reward: float | None = None


@dataclass
class FakeResult:
    score: float | None
    episodes: int
    timesteps: int
    ok: bool
    error: str | None
    summary: dict[str, Any] = field(default_factory=dict)


EPISODE_LENGTH = 10


def fake_level_runner(task: Any, on_progress: Any, cancel: threading.Event) -> FakeResult:
    """TEST DOUBLE of ``contestkit.runs.evaluation.evaluate_level``: a deterministic fake game.

    - every episode lasts 10 timesteps; its reward is the number in an image tag ``score-N`` (else
      10), plus 0, 1, 2 in turn, so a level's score is N + 1 for episodes in multiples of three;
    - the level takes ``CK_FAKE_LEVEL_SECONDS`` (default 0.3 s) to use the whole timestep budget,
      or ``CK_FAKE_SLOW_SECONDS`` (default 5 s) when the tag ends in ``slow``;
    - state ``Crash`` raises, ``NoEpisodes`` ends with no finished episode, ``Slow`` ignores the
      wall-clock budget until cancelled (for the server's watchdog);
    - each call appends "job idx state" to ``CK_FAKE_RUN_LOG`` when set, so tests can count re-runs;
    - summary.json also records the CPU set and the seed the server gave the level and when it ran;
      agent-stdout.txt says which level the fake agent played.
    """
    if os.environ.get("CK_FAKE_RUN_LOG"):
        with open(os.environ["CK_FAKE_RUN_LOG"], "a", encoding="utf-8") as fh:
            fh.write(f"{task.job_id} {task.index} {task.run.state}\n")
    if task.run.state == "Crash":
        raise RuntimeError("the fake agent crashed on purpose")
    base, slow = _score_of(task.run.image)
    seconds = float(os.environ.get("CK_FAKE_SLOW_SECONDS" if slow else "CK_FAKE_LEVEL_SECONDS", "5" if slow else "0.3"))
    limit = task.run.timestep_limit
    step_sleep = seconds / max(1, limit)
    results = Path(task.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "agent-stdout.txt").write_text(f"fake agent playing {task.run.game} {task.run.state}\n")
    rewards: list[float] = []
    start = time.monotonic()
    started_at = time.time()
    timesteps = 0
    with (results / "monitor.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["r", "l", "t"])
        while not cancel.is_set():
            if task.run.state != "Slow" and timesteps >= limit:
                break
            time.sleep(step_sleep if task.run.state != "Slow" else 0.05)
            timesteps += 1
            if timesteps % EPISODE_LENGTH == 0 and task.run.state != "NoEpisodes":
                reward = base + len(rewards) % 3
                rewards.append(reward)
                writer.writerow([reward, EPISODE_LENGTH, round(time.monotonic() - start, 3)])
                fh.flush()
            elapsed = time.monotonic() - start
            rate = timesteps / elapsed if elapsed > 0 else 0.0
            eta = (limit - timesteps) / rate if rate and timesteps < limit else None
            mean = sum(rewards) / len(rewards) if rewards else None
            on_progress(FakeProgress(timesteps, limit, len(rewards), elapsed, eta, mean))
    score = sum(rewards) / len(rewards) if rewards else None
    run = task.run
    cpus = str(run.cpuset) if run.cpuset else None
    summary = {"game": run.game, "state": run.state, "episodes": len(rewards), "timesteps": timesteps, "score": score,
               "cpuset": cpus, "seed": run.seed, "started_at": started_at, "ended_at": time.time()}  # fmt: skip
    (results / "summary.json").write_text(json.dumps(summary))
    if cancel.is_set():
        return FakeResult(score, len(rewards), timesteps, False, "cancelled", summary)
    if not rewards:
        return FakeResult(None, 0, timesteps, False, "the agent finished no episode", summary)
    return FakeResult(score, len(rewards), timesteps, True, None, summary)


def _score_of(image: str) -> tuple[float, bool]:
    """(N of a ``score-N`` tag, whether the tag asks for a slow level: ``...-slow``).

    A pulled ``repo@sha256:`` image is looked up in the engine, which also proves that the server
    really pulled it from the registry."""
    tags = [image]
    if "@" in image:
        import docker

        client = docker.from_env()
        try:
            tags = client.images.get(image).tags
        finally:
            client.close()
    base, slow = 10.0, False
    for name in tags:
        tag = name.rsplit(":", 1)[-1]
        slow = slow or tag.endswith("slow")
        match = re.match(r"score-(\d+(?:\.\d+)?)", tag)
        if match:
            base = float(match.group(1))
    return base, slow
