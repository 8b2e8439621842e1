"""Cost of the bridge: the contest env stepped in-process vs. through the bridge.

Busy machines distort this badly (a process that sleeps on every step is favoured by the
scheduler over one that never does), so measure on an otherwise idle machine.

Both sides run the same env (ContestEnv with the episode log) on Airstriker-Genesis Level1 with
the same pre-drawn random actions. Runs are interleaved (in-process, bridged, in-process, ...)
so that machine noise hits both alike; the figure is the median over rounds of
(bridged time per timestep / in-process time per timestep).

Each round also measures the machine's floor for any bridge whose wake-up blocks rather than
polls: one blocking 16-byte round trip between two processes, the waiting one idle for a whole
in-process timestep first, as the agent is while the env steps. ``floor_ratio`` is
(timestep + that round trip) / timestep. On a VM, waking an idle virtual CPU is expensive, and
this floor alone can exceed a few percent; the bridge cannot beat it without spinning.
``--same-cpu`` pins everything (both runs, both bridge processes, the floor) to one CPU, which
turns the cross-CPU wake-up into a same-CPU context switch. ``--idle-poll`` (root) asks the
kernel, for the length of the run only, to keep idle CPUs in their polling idle state (a PM QoS
request through /dev/cpu_dma_latency), which is what waking another CPU costs on a machine
where that is cheap; it burns the idle CPUs, so it is a measurement, not a setting to keep.

``--breakdown`` instead times the parts of one bridged step with timestamps taken on both sides
(CLOCK_MONOTONIC is one clock for every process on the machine): the agent's send and wake-up
and observation copy, and, in an env process that runs the real BridgeServer loop around a timed
env and a timed episode log, the env's wake-up, the emulator step, the observation write into
the shared mapping and the episode log. It prints the median of each part in microseconds.

    python bench/bridge.py [--rounds 7] [--steps 3000] [--same-cpu] [--idle-poll] [--json]
    python bench/bridge.py --breakdown [--steps 3000] [--same-cpu] [--no-copy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contestkit.bridge.client import RemoteEnv
from contestkit.bridge.protocol import memory_tmpdir
from contestkit.bridge.wakeup import round_trip
from contestkit.env.envs import ContestEnv
from contestkit.env.games import resolve_level
from contestkit.env.monitor import EpisodeLog
from contestkit.runs.levelrun import EnvPlacement, LevelRunSpec, to_argv
from contestkit.runtime.base import ENV_PROGRAM

GAME, STATE = "Airstriker-Genesis", "Level1"


def actions(n: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 2, size=(n, 12), dtype=np.uint8)
    a[:, 7] = 1
    return a


def in_process(acts: np.ndarray, workdir: Path) -> float:
    env = ContestEnv(resolve_level(GAME, STATE), seed=0)
    log = EpisodeLog(workdir / "inproc")
    env.reset()
    t0 = time.perf_counter()
    for a in acts:
        _, r, term, trunc, _ = env.step(a)
        log.record(r, term or trunc)
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    log.close()
    env.close()
    return dt / len(acts)


def bridged(acts: np.ndarray, workdir: Path, copy_obs: bool = True) -> float:
    bridge = Path(tempfile.mkdtemp(prefix="ckb-", dir=memory_tmpdir())) / "sock"
    spec = LevelRunSpec(game=GAME, state=STATE, seed=0, timestep_limit=len(acts) + 10, connect_timeout=60)
    proc = subprocess.Popen(
        [sys.executable, "-m", ENV_PROGRAM, *to_argv(spec, EnvPlacement(bridge, workdir / "bridged"))],
        stdout=subprocess.DEVNULL,
    )
    try:
        env = RemoteEnv(bridge, connect_timeout=60, copy_obs=copy_obs)
        env.reset()
        t0 = time.perf_counter()
        for a in acts:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        dt = time.perf_counter() - t0
        env.close()
    finally:
        proc.wait(timeout=30)
    return dt / len(acts)


class _TimedEnv:
    """The contest env, with a timestamp as the bridge's loop enters and leaves each step."""

    def __init__(self, env: ContestEnv, enter: np.ndarray, leave: np.ndarray) -> None:
        self.env, self.enter, self.leave, self.i = env, enter, leave, 0

    def reset(self) -> tuple[np.ndarray, dict]:
        return self.env.reset()

    def step(self, action: np.ndarray) -> tuple:
        self.enter[self.i] = time.perf_counter_ns()
        out = self.env.step(action)
        self.leave[self.i] = time.perf_counter_ns()
        return out


class _TimedLog:
    """The episode log, with a timestamp as the loop enters (the observation is written by then)
    and leaves it (the reply is sent next)."""

    def __init__(self, log: EpisodeLog, env: _TimedEnv, enter: np.ndarray, leave: np.ndarray) -> None:
        self.log, self.env, self.enter, self.leave = log, env, enter, leave

    def record(self, reward: float, done: bool) -> None:
        i = self.env.i
        self.enter[i] = time.perf_counter_ns()
        self.log.record(reward, done)
        self.env.i = i + 1
        self.leave[i] = time.perf_counter_ns()

    @property
    def episode_rewards(self) -> list[float]:
        return self.log.episode_rewards


def _timed_env_side(bridge: Path, workdir: Path, steps: int, conn: object) -> None:
    """The env process of --breakdown: the real BridgeServer loop around a timed env and log."""
    from contestkit.bridge.protocol import Hello
    from contestkit.bridge.server import BridgeServer, Budgets

    stamps = np.zeros((4, steps + 16), dtype=np.int64)
    inner = ContestEnv(resolve_level(GAME, STATE), seed=0)
    env = _TimedEnv(inner, stamps[0], stamps[1])
    log = _TimedLog(EpisodeLog(workdir), env, stamps[2], stamps[3])
    hello = Hello(game=GAME, state=STATE, buttons=inner.buttons, obs_shape=list(inner.observation_space.shape))
    BridgeServer(bridge, env, hello, log, Budgets(timestep_limit=steps + 16), connect_timeout=60).serve()
    conn.send(stamps[:, : env.i])  # type: ignore[attr-defined]


def in_process_step_us(acts: np.ndarray) -> float:
    """Median microseconds of the emulator step alone, stepped in this process (the same timing
    points as the bridged breakdown's "emulator step")."""
    env = ContestEnv(resolve_level(GAME, STATE), seed=0)
    env.reset()
    clock, times = time.perf_counter_ns, np.zeros(len(acts), dtype=np.int64)
    for i, a in enumerate(acts):
        t0 = clock()
        _, _, term, trunc, _ = env.step(a)
        times[i] = clock() - t0
        if term or trunc:
            env.reset()
    env.close()
    return float(np.median(times)) / 1e3


BREAKDOWN_PARTS = (
    "action send + env wake",
    "emulator step",
    "observation write",
    "episode log",
    "reply + agent wake",
    "observation copy",
    "agent loop (next action)",
)


def breakdown(acts: np.ndarray, workdir: Path, copy_obs: bool = True) -> dict[str, float]:
    """Median microseconds of each part of a bridged step (see the module docstring)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    bridge = Path(tempfile.mkdtemp(prefix="ckb-", dir=memory_tmpdir())) / "sock"
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_timed_env_side, args=(bridge, workdir / "breakdown", len(acts), theirs))
    proc.start()
    n = len(acts)
    sent, woke, copied = (np.zeros(n, dtype=np.int64) for _ in range(3))
    env = RemoteEnv(bridge, connect_timeout=60, copy_obs=False)
    env.reset()
    clock = time.perf_counter_ns
    for i, a in enumerate(acts):
        sent[i] = clock()
        obs, _, term, trunc, _ = env.step(a)
        woke[i] = clock()
        if copy_obs:
            obs = obs.copy()  # what RemoteEnv(copy_obs=True) does after its wake-up
        copied[i] = clock()
        if term or trunc:
            env.reset()
    env.close()
    enter, leave, log_in, log_out = ours.recv()
    proc.join(timeout=30)
    parts = (
        enter - sent,
        leave - enter,
        log_in - leave,
        log_out - log_in,
        woke - log_out,
        copied - woke,
        sent[1:] - copied[:-1],
    )
    return {name: float(np.median(d)) / 1e3 for name, d in zip(BREAKDOWN_PARTS, parts, strict=True)}


def json_bridged(acts: np.ndarray, workdir: Path) -> float:
    """The same run through a 2018-style JSON bridge (bench/json_bridge.py)."""
    import multiprocessing as mp

    from json_bridge import JsonRemoteEnv, serve

    d = tempfile.mkdtemp(prefix="ckj-", dir=memory_tmpdir())  # same footing as ours
    proc = mp.get_context("spawn").Process(target=serve, args=(d, GAME, STATE))
    proc.start()
    env = JsonRemoteEnv(d, timeout=60)
    env.reset()
    t0 = time.perf_counter()
    for a in acts:
        _, _, done, _ = env.step(a)
        if done:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    proc.join(timeout=30)
    return dt / len(acts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--compare-json", action="store_true", help="also time a 2018-style JSON bridge")
    ap.add_argument("--same-cpu", action="store_true", help="pin everything to one CPU (the last one)")
    ap.add_argument("--idle-poll", action="store_true", help="keep idle CPUs polling during the run (root)")
    ap.add_argument("--breakdown", action="store_true", help="time the parts of a bridged step instead")
    ap.add_argument("--no-copy", action="store_true", help="the agent takes views (copy_obs=False)")
    args = ap.parse_args()
    if args.same_cpu:
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # children inherit it
    if args.idle_poll:
        # The request holds while this file stays open, and ends with the process.
        qos = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
        os.write(qos, (0).to_bytes(4, "little"))
    acts = actions(args.steps)
    if args.breakdown:
        with tempfile.TemporaryDirectory() as tmp:
            parts = breakdown(acts, Path(tmp), copy_obs=not args.no_copy)
            parts["emulator step, in-process (reference)"] = in_process_step_us(acts)
        if args.json:
            print(
                json.dumps(
                    {
                        "bench": "bridge-breakdown",
                        "copy_obs": not args.no_copy,
                        "placement": "same-cpu" if args.same_cpu else "default",
                        "us": parts,
                        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                        "date": time.strftime("%Y-%m-%d"),
                        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
                    }
                )
            )
        else:
            for name, us in parts.items():
                print(f"{name:38s} {us:9.1f} us")
        return
    ratios, inproc, bridge, views, json_ratios, floors = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.rounds):
            a = in_process(acts, work)
            b = bridged(acts, work)
            v = bridged(acts, work, copy_obs=False)
            inproc.append(a)
            bridge.append(b)
            views.append(v)
            ratios.append(b / a)
            floor = (a + round_trip(a, n=1000)) / a
            floors.append(floor)
            line = (
                f"round {i + 1}: in-process {a * 1e3:.3f} ms/step, bridged {b * 1e3:.3f} ms/step, "
                f"ratio {b / a:.4f} (copy_obs=False {v / a:.4f}; floor {floor:.4f})"
            )
            if args.compare_json:
                j = json_bridged(acts, work)
                json_ratios.append(j / a)
                line += f"; JSON bridge {j * 1e3:.3f} ms/step, ratio {j / a:.4f}"
            if not args.json:
                print(line)
    floor_us = (statistics.median(floors) - 1) * statistics.median(inproc) * 1e6
    own_us = (statistics.median(bridge) - statistics.median(inproc)) * 1e6 - floor_us
    result = {
        "bench": "bridge",
        "game": f"{GAME} {STATE}",
        "steps_per_run": args.steps,
        "rounds": args.rounds,
        "ratio": round(statistics.median(ratios), 4),
        "ratios": [round(r, 4) for r in ratios],
        "in_process_ms_per_step": round(statistics.median(inproc) * 1e3, 4),
        "bridged_ms_per_step": round(statistics.median(bridge) * 1e3, 4),
        "overhead_us_per_step": round((statistics.median(bridge) - statistics.median(inproc)) * 1e6, 1),
        "view_ratio": round(statistics.median(v / a for v, a in zip(views, inproc, strict=True)), 4),
        "view_overhead_us_per_step": round((statistics.median(views) - statistics.median(inproc)) * 1e6, 1),
        "floor_ratio": round(statistics.median(floors), 4),
        "floor_round_trip_us": round(floor_us, 1),
        # What the bridge itself adds above the machine's wake-up floor, in microseconds and as a
        # share of an in-process step: a faster or slower emulator neither hides nor inflates it.
        "own_cost_us_per_step": round(own_us, 1),
        "own_cost_percent": round(own_us / (statistics.median(inproc) * 1e6) * 100, 2),
        "placement": "same-cpu" if args.same_cpu else "default",
        "idle_poll": args.idle_poll,
        "json_bridge_ratio": round(statistics.median(json_ratios), 4) if json_ratios else None,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"median ratio {result['ratio']} ({result['overhead_us_per_step']} us/step overhead)")
        print(f"copy_obs=False: median ratio {result['view_ratio']} ({result['view_overhead_us_per_step']} us/step)")
        print(
            f"floor for a non-polling bridge on this machine: {result['floor_ratio']} "
            f"(one blocking round trip, {result['floor_round_trip_us']} us)"
        )
        print(
            f"the bridge's own cost above the floor: {result['own_cost_us_per_step']} us/step "
            f"({result['own_cost_percent']}% of an in-process step)"
        )
        if json_ratios:
            print(f"2018-style JSON bridge: median ratio {result['json_bridge_ratio']}")


if __name__ == "__main__":
    main()
