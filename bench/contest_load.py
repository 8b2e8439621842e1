"""The 2018 contest's load, simulated through the contest server's own queue, against N cluster nodes.

    python bench/contest_load.py [--nodes 20,40,80,120,160,240] [--scenario random,ppo] [--json]

What is the server's own code here, and what is simulated:

* real: the database (SQLite in a temporary directory, the real schema and migrations), a real team
  row per team, ``start_job`` (so the one-active-job-per-team rule refuses a team's submission while
  its job runs; the team submits again when it ends, as contestants did), the queue's claim (oldest
  queued first, the real SQL), recording each level's start and end, and finishing each job
  (score, summary.json) exactly as the server does;
* simulated: time (a discrete-event clock replaces ``now()`` in the queue's modules), the level-runs
  themselves (each takes its simulated duration), and placement: N nodes of 6 cores, one level-run
  (6 cores, the contest machine) per node, levels waiting first come first served for a free node.
  That last part is the server's placement policy (``parallel_levels`` levels of a claimed job, each
  waiting for a slot of ``CpusetPool``, or for a node via the Kubernetes scheduler) written as an
  event loop: the scheduler's own code runs in threads against the real clock and cannot be driven
  by a simulated one (what it would need: ``Scheduler`` taking a clock and a "slots free" callback
  instead of ``time``/``threading`` waits; then this loop could call it directly).

The load: 4,448 jobs x 5 levels from 229 teams over 8 weeks; half of the submissions spread evenly
over the first six weeks, half in the last two with a rate growing exponentially (time constant two
days) towards the deadline; teams submit unevenly (Zipf weights). Level lengths from measured
throughput (README benchmarks): ``random`` 1,000,000 timesteps at 800 steps/s (the contest's random
agent through the Docker runtime: about 21 minutes), ``ppo`` at 290 steps/s (PPO learning during the
evaluation, ``bench/agent_step.py``: 2.28 ms of agent plus about 1.2 ms of env a step: about 57
minutes), ``slow`` drawn log-uniformly between 23 steps/s (the 12-hour cap) and 800 (the issue's
"about 90 running on average" needs levels of about 5 hours on average); every level is capped at
12 hours.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

JOBS = 4448
TEAMS = 229
LEVELS = 5
WEEKS = 8
TIMESTEPS = 1_000_000
CAP = 43_200.0
DEADLINE = WEEKS * 7 * 86400.0
SURGE = 2 * 86400.0  # the last window the wait is reported for separately (the deadline surge)
SCENARIOS = {"random": 800.0, "ppo": 290.0, "slow": None, "2018": "lognormal"}
# The 2018 scenario: levels of about 5 hours (log-normal, median 4.5 h, capped at 12 h: the README's
# "about 90 running on average" over 8 weeks), the scheduler's claim cap (parallel_jobs: 100 jobs
# claimed at once), and nodes that an autoscaler adds only after SCALE_UP_DELAY and removes after
# SCALE_DOWN_IDLE without work.
MEDIAN_2018 = 4.5 * 3600.0
SIGMA_2018 = 0.5
CLAIM_CAP = 100
SCALE_UP_DELAY = 10 * 60.0
SCALE_DOWN_IDLE = 10 * 60.0


class Clock:
    """The simulated time the queue's ``now()`` reads."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.t = 0.0

    def now(self) -> float:
        return self.start + self.t


def submissions(rng: random.Random, jobs: int = JOBS) -> list[tuple[float, int]]:
    """(desired time, team) for every job: the 2018 shape, a surge before the deadline."""
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(TEAMS)]
    times = []
    for i in range(jobs):
        if i % 2 == 0:
            times.append(rng.uniform(0.0, 6 * 7 * 86400.0))
        else:
            # Exponential growth towards the deadline over the last two weeks (inverse-CDF sampling).
            tau, span = 2 * 86400.0, 14 * 86400.0
            u = rng.random()
            back = -tau * math.log(1 - u * (1 - math.exp(-span / tau)))
            times.append(DEADLINE - back)
    teams = rng.choices(range(TEAMS), weights=weights, k=jobs)
    return sorted(zip(times, teams, strict=True))


def duration(scenario: str, rng: random.Random) -> float:
    sps = SCENARIOS[scenario]
    if sps == "lognormal":
        return min(rng.lognormvariate(math.log(MEDIAN_2018), SIGMA_2018), CAP)
    if sps is None:
        sps = math.exp(rng.uniform(math.log(TIMESTEPS / CAP), math.log(800.0)))
    return min(TIMESTEPS / sps, CAP)


# -- the server's own code -----------------------------------------------------------------------------


class ServerQueue:
    """The calls the simulation makes into the server: ``operations.start_job`` and ``queue.JobQueue``."""

    def __init__(self, data_dir: Path, clock: Clock) -> None:
        from contestkit.server.config import ServerConfig
        from contestkit.server.storage.db import Database, Team
        from contestkit.server.storage.migrations import migrate

        levels = data_dir / "levels.csv"
        levels.write_text("game,state\n" + "".join(f"Game{i}-Genesis,Level{i}\n" for i in range(LEVELS)))
        self.config = ServerConfig(registry="registry.example.org:5000", data_dir=data_dir, pull_images=False)
        self.database = Database(f"sqlite:///{data_dir / 'contest.db'}")
        migrate(self.database)
        with self.database.session() as db:
            for i in range(TEAMS):
                db.add(Team(name=f"team-{i}", email=f"t{i}@example.org", password_hash="-", namespace=f"team{i}",
                            registry_username=f"team{i}"))  # fmt: skip
        self._patch_clock(clock)
        from contestkit.server.errors import Conflict
        from contestkit.server.queue import operations
        from contestkit.server.queue.jobqueue import JobQueue

        self._start = operations.start_job
        self._busy = Conflict
        self.queue = JobQueue(self.database, self.config, "bench")

    @staticmethod
    def _patch_clock(clock: Clock) -> None:
        import importlib

        for name in ("db", "queue", "operations", "documents", "scheduling"):
            try:
                module = importlib.import_module(f"contestkit.server.{name}")
            except ImportError:
                continue
            if hasattr(module, "now"):
                module.now = clock.now  # type: ignore[attr-defined]

    def submit(self, team: int) -> int | None:
        """The team's submission: its job id, or None when the server refuses it (the team's job still runs)."""
        try:
            return int(self._start(self.database, self.config, team + 1, "agent:v1", "sha256:" + "0" * 64).id)
        except self._busy:
            return None

    def claim(self) -> tuple[int, list[int], Path] | None:
        """The oldest queued job: its id, its pending workers and its attempt directory."""
        job_id = self.queue.claim()
        if job_id is None:
            return None
        claimed = self.queue.claimed(job_id)
        return job_id, [p.worker_id for p in claimed.pending], claimed.attempt_dir

    def level_started(self, worker_id: int, results_dir: Path) -> None:
        self.queue.level_started(worker_id, results_dir)

    def level_ended(self, job_id: int, worker_id: int, result: Any) -> None:
        self.queue.level_ended(worker_id, None, False, result, None)

    def finish(self, job_id: int, attempt_dir: Path) -> None:
        attempt_dir.mkdir(parents=True, exist_ok=True)
        self.queue.finish(job_id, None, attempt_dir)


@dataclass
class _Result:
    score: float
    episodes: int = 10
    timesteps: int = TIMESTEPS
    ok: bool = True
    error: str | None = None


def simulate(nodes: int, scenario: str, seed: int = 2018, jobs: int = JOBS) -> dict[str, Any]:
    """One run of the whole contest. ``nodes``: the cluster's size (static), or its autoscaler's
    maximum in the 2018 scenario, which also caps claimed jobs and delays new nodes."""
    rng = random.Random(seed)
    autoscale = scenario == "2018"
    claim_cap = CLAIM_CAP if autoscale else None
    claimed_jobs = 0
    provisioning = 0
    idle_since: list[float] = []  # per idle ready node: since when (autoscale only)
    clock = Clock(start=1522886400.0)  # 2018-04-05, the contest's start
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="contest-load-", dir=shm if shm.is_dir() else None) as tmp:
        server = ServerQueue(Path(tmp), clock)
        events: list[tuple[float, int, str, Any]] = []
        counter = 0

        def push(t: float, kind: str, payload: Any) -> None:
            nonlocal counter
            counter += 1
            heapq.heappush(events, (t, counter, kind, payload))

        for t, team in submissions(rng, jobs):
            push(t, "submit", team)
        deferred: dict[int, int] = {}  # team -> submissions waiting for its running job
        team_of: dict[int, int] = {}
        waiting: deque[tuple[int, int, float]] = deque()  # (job, worker, queued at)
        left: dict[int, int] = {}
        attempt_dirs: dict[int, Path] = {}
        free = nodes
        waits: list[tuple[float, float]] = []  # (queued at, wait)
        busy_seconds = 0.0
        peak_running = peak_waiting = refused = 0
        last_end = 0.0
        submitted_at: dict[int, float] = {}
        unclaimed = 0  # jobs submitted and not claimed yet: only then is the queue asked

        def dispatch() -> None:
            nonlocal free, busy_seconds, peak_waiting, unclaimed, claimed_jobs, provisioning
            while unclaimed and (claim_cap is None or claimed_jobs < claim_cap):
                claimed = server.claim()
                if claimed is None:
                    break
                claimed_jobs += 1
                unclaimed -= 1
                job_id, workers, attempt_dir = claimed
                attempt_dirs[job_id] = attempt_dir
                left[job_id] = len(workers)
                waiting.extend((job_id, w, submitted_at[job_id]) for w in workers)
            peak_waiting = max(peak_waiting, len(waiting))
            if autoscale:
                spare = free - provisioning - len(idle_since)  # nodes the autoscaler may still add
                wanted = min(spare, len(waiting) - provisioning - len(idle_since))
                for _ in range(max(0, wanted)):
                    provisioning += 1
                    push(clock.t + SCALE_UP_DELAY, "node", None)
            while free and waiting and (not autoscale or idle_since):
                if autoscale:
                    idle_since.pop()
                job_id, worker, queued_at = waiting.popleft()
                free -= 1
                waits.append((queued_at, clock.t - queued_at))
                server.level_started(worker, attempt_dirs[job_id] / str(worker))
                length = duration(scenario, rng)
                busy_seconds += length
                push(clock.t + length, "end", (job_id, worker))

        deferred_since: dict[int, list[float]] = {}  # team -> when its refused submissions were wanted
        deferred_waits: list[float] = []
        node_seconds = 0.0  # nodes up (running, idle or starting) over time
        while events:
            t, _, kind, payload = heapq.heappop(events)
            up = (nodes - free) + len(idle_since) + provisioning if autoscale else nodes
            node_seconds += (t - clock.t) * up
            clock.t = t
            if kind == "node":
                provisioning -= 1
                idle_since.append(t)
                push(t + SCALE_DOWN_IDLE, "idle-check", None)
            elif kind == "idle-check":
                # Nodes idle for SCALE_DOWN_IDLE go (the autoscaler's scale-down).
                idle_since[:] = [since for since in idle_since if t - since < SCALE_DOWN_IDLE]
            elif kind == "submit":
                job_id = server.submit(payload)
                if job_id is not None:
                    team_of[job_id] = payload
                    submitted_at[job_id] = t
                    unclaimed += 1
                    wanted_at = deferred_since.get(payload)
                    if wanted_at and t > wanted_at[0]:
                        deferred_waits.append(t - wanted_at.pop(0))
                else:
                    refused += 1
                    deferred[payload] = deferred.get(payload, 0) + 1
                    deferred_since.setdefault(payload, []).append(t)
            else:
                job_id, worker = payload
                free += 1
                if autoscale:
                    idle_since.append(t)
                    push(t + SCALE_DOWN_IDLE, "idle-check", None)
                last_end = t
                server.level_ended(job_id, worker, _Result(score=rng.uniform(0, 5000)))
                left[job_id] -= 1
                if left[job_id] == 0:
                    claimed_jobs -= 1
                    server.finish(job_id, attempt_dirs[job_id])
                    team = team_of[job_id]
                    if deferred.get(team):
                        deferred[team] -= 1
                        push(t, "submit", team)
            dispatch()
            peak_running = max(peak_running, nodes - free)
    all_waits = [w for _, w in waits]
    surge = [w for q, w in waits if q >= DEADLINE - SURGE]

    def pct(values: list[float], p: float) -> float:
        if not values:
            return 0.0
        values = sorted(values)
        return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]

    return {
        "nodes": nodes,
        "scenario": scenario,
        "level_runs": len(waits),
        "mean_level_hours": round(busy_seconds / len(waits) / 3600, 2),
        "wait_p50_min": round(pct(all_waits, 50) / 60, 1),
        "wait_p95_min": round(pct(all_waits, 95) / 60, 1),
        "wait_max_h": round(max(all_waits) / 3600, 1),
        "surge_wait_p95_min": round(pct(surge, 95) / 60, 1),
        "surge_wait_max_h": round(max(surge, default=0.0) / 3600, 1),
        "busy_node_hours": round(busy_seconds / 3600),
        "provisioned_node_hours": round(node_seconds / 3600),
        "peak_waiting_levels": peak_waiting,
        "refused_submissions": refused,
        "last_result_after_deadline_h": round(max(0.0, last_end - DEADLINE) / 3600, 1),
        "mean_wait_min": round(statistics.fmean(all_waits) / 60, 1),
        "deferred_submissions": len(deferred_waits),
        "deferred_wait_p95_h": round(pct(deferred_waits, 95) / 3600, 1),
        "claim_cap": claim_cap,
        "scale_up_delay_min": SCALE_UP_DELAY / 60 if autoscale else 0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="10,20,40,80,160,240")
    ap.add_argument("--scenario", default="random,ppo,slow")
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--jobs", type=int, default=JOBS, help="jobs in the contest (fewer: a quick look)")
    args = ap.parse_args(argv)
    rows = []
    for scenario in args.scenario.split(","):
        for nodes in (int(n) for n in args.nodes.split(",")):
            started = time.monotonic()
            row = simulate(nodes, scenario, args.seed, args.jobs)
            row["sim_seconds"] = round(time.monotonic() - started, 1)
            rows.append(row)
            if not args.json:
                print(
                    f"{scenario:7} N={nodes:4}  level {row['mean_level_hours']:5.2f} h  "
                    f"wait p50 {row['wait_p50_min']:7.1f} min  p95 {row['wait_p95_min']:8.1f} min  "
                    f"max {row['wait_max_h']:6.1f} h  | surge p95 {row['surge_wait_p95_min']:8.1f} min  "
                    f"max {row['surge_wait_max_h']:6.1f} h  | node-hours busy {row['busy_node_hours']:6}  "
                    f"provisioned {row['provisioned_node_hours']:7}  | deferred p95 {row['deferred_wait_p95_h']} h  "
                    f"({row['sim_seconds']} s)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
