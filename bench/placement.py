"""`contestkit eval --cpuset N` (env and agent on one CPU) vs. the OS's placement, end to end.

The bridge's cost is mostly waking the other process; across CPUs of a virtual machine that is
expensive, on one CPU it is a context switch (bench/bridge.py measures both floors). This checks
what that means for a whole evaluation: the contest's random agent on Airstriker-Genesis Level1
with the local runtime, runs interleaved (default, one CPU, default, ...), steady-state
throughput from log.csv; the figure is the median over rounds of
one-CPU steps/s / default steps/s. A single-threaded agent is the case --cpuset 1 is for; a
multi-threaded one would lose its other CPUs.

    python bench/placement.py [--rounds 3] [--steps 20000] [--cpu N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_runtimes import run_eval, steady_throughput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="the one CPU (default: the last)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"default": [], "one-cpu": []}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for name, extra in (("default", []), ("one-cpu", ["--cpuset", str(args.cpu)])):
                rd = Path(tmp, f"{name}-{i}")
                run_eval("local", args.steps, rd, extra)
                runs[name].append(steady_throughput(rd))
            ratios.append(runs["one-cpu"][-1] / runs["default"][-1])
            if not args.json:
                print(f"round {i + 1}: default {runs['default'][-1]:.0f} steps/s, "
                      f"one CPU {runs['one-cpu'][-1]:.0f} steps/s, ratio {ratios[-1]:.3f}")  # fmt: skip
    result = {
        "bench": "placement",
        "ratio": round(statistics.median(ratios), 4),
        "ratios": [round(r, 4) for r in ratios],
        "default_steps_per_s": round(statistics.median(runs["default"]), 1),
        "one_cpu_steps_per_s": round(statistics.median(runs["one-cpu"]), 1),
        "steps_per_run": args.steps,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result) if args.json else f"median one-CPU / default throughput: {result['ratio']}")


if __name__ == "__main__":
    main()
