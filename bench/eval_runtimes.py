"""Docker runtime vs. local runtime: throughput, and time from `contestkit eval` to the first step.

The same agent (the contest's random agent) on Airstriker-Genesis Level1, runs interleaved
(local, docker, local, ...). Throughput is the steady state read from log.csv (first to last
1,000-step mark, so start-up is excluded); the figure is the median over rounds of
local-throughput / docker-throughput (the slowdown of containers, goal <= 1.05).

Start-up is measured as users meet it: wall time from launching `contestkit eval` (a new
process, images already built) to the env serving the first step (goal <= 3 s).

    python bench/eval_runtimes.py [--rounds 3] [--steps 20000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GAME, STATE = "Airstriker-Genesis", "Level1"
AGENT = Path(__file__).resolve().parent.parent / "contestkit" / "data" / "random_agent.py"
IMAGE = "contestkit-bench-random-agent:latest"


def build_agent_image() -> None:
    from contestkit.containers import dockerengine
    from contestkit.containers.images import ensure_image

    api = dockerengine.connect()
    ensure_image("cpu", api=api)
    ensure_image("remote-env", api=api)
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "agent.py").write_text(AGENT.read_text())
        Path(ctx, "Dockerfile").write_text("FROM contestkit/agent:cpu\nADD agent.py /root/compo/agent.py\n")
        for _ in api.build(path=ctx, tag=IMAGE, rm=True, decode=True):
            pass


def run_eval(runtime: str, steps: int, results: Path, extra: list[str] | None = None) -> float:
    """Run `contestkit eval` in a new process; return seconds from launch to the first step."""
    args = ["eval", GAME, STATE, "--runtime", runtime, "--timestep-limit", str(steps), "--results-dir", str(results),
            "--quiet", "--json", "--seed", "0", *(extra or [])]  # fmt: skip
    args += ["--image", IMAGE] if runtime == "docker" else ["--agent", str(AGENT)]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "contestkit", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{runtime} eval failed: {proc.stderr[-2000:]}")
    status = json.loads((results / "remote-status.json").read_text())
    return status["first_step_at"] - t0


def steady_throughput(results: Path) -> float:
    with open(results / "log.csv") as f:
        rows = [(int(r["l"]), float(r["t"])) for r in csv.DictReader(f)]
    (l0, t0), (l1, t1) = rows[0], rows[-1]
    return (l1 - l0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--startup-steps", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    build_agent_image()
    ratios, tput = [], {"local": [], "docker": []}
    startup: dict[str, list[float]] = {"local": [], "docker": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for runtime in ("local", "docker"):
                rd = Path(tmp, f"{runtime}-{i}")
                run_eval(runtime, args.steps, rd)
                tput[runtime].append(steady_throughput(rd))
                startup[runtime].append(run_eval(runtime, args.startup_steps, Path(tmp, f"{runtime}-start-{i}")))
            ratios.append(tput["local"][-1] / tput["docker"][-1])
            if not args.json:
                print(f"round {i + 1}: local {tput['local'][-1]:.0f} steps/s, docker {tput['docker'][-1]:.0f} steps/s, "
                      f"ratio {ratios[-1]:.3f}; first step after {startup['local'][-1]:.2f} s local, "
                      f"{startup['docker'][-1]:.2f} s docker")  # fmt: skip
    result = {
        "bench": "eval_runtimes",
        "ratio": round(statistics.median(ratios), 4),
        "ratios": [round(r, 4) for r in ratios],
        "local_steps_per_s": round(statistics.median(tput["local"]), 1),
        "docker_steps_per_s": round(statistics.median(tput["docker"]), 1),
        "startup_local_s": round(statistics.median(startup["local"]), 3),
        "startup_docker_s": round(statistics.median(startup["docker"]), 3),
        "steps_per_run": args.steps,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(
        json.dumps(result)
        if args.json
        else f"median slowdown {result['ratio']}; start-up {result['startup_docker_s']} s docker"
    )


if __name__ == "__main__":
    main()
