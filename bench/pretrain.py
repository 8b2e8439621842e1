"""Pretraining throughput: steps/s of ``python -m agent.pretrain`` with N environments against 1.

Scaffolds a template with ``contestkit new`` exactly as a user gets it, then runs its
``agent.pretrain`` on Airstriker-Genesis Level1 with ``--envs 1`` and ``--envs N`` in interleaved
rounds (so a change in the machine's load hits both alike), each round from scratch. The rate is
the one pretraining itself reports: timesteps over the seconds of its training loop, learning
included, worker start-up excluded. The goal for N = 2 on a 2-core machine is at least 1.8x.

    python bench/pretrain.py                                   # PyTorch, N=2 vs 1, 3 rounds of 4,096
    python bench/pretrain.py --template tf --envs 2 --rounds 5 --timesteps 8192 --json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agents import machine  # noqa: E402

RATE = re.compile(r"\(([\d.]+) steps/s this run\)")
CPU = re.compile(r"cpu per timestep: learner ([\d.]+) ms, env workers ([\d.]+) ms")


def scaffold(template: str, parent: Path) -> Path:
    from contestkit.projects.scaffold import create_project

    project = parent / f"bench-{template}"
    if not project.exists():
        create_project(f"bench-{template}", template=template, directory=parent)
    (project / "air.csv").write_text("game,state\nAirstriker-Genesis,Level1\n")
    return project


def one_run(project: Path, envs: int, timesteps: int, seed: int, n_steps: int | None) -> dict[str, Any]:
    """One pretraining run from scratch; its own steps/s figure."""
    out = project / "bench-out" / f"envs{envs}-seed{seed}.ckpt"
    out.parent.mkdir(exist_ok=True)
    framework = (project / "agent" / "framework.py").read_text()
    out = out.with_suffix(re.search(r'CHECKPOINT_SUFFIX = "([^"]+)"', framework).group(1))
    for stale in out.parent.glob(out.stem + "*"):
        stale.unlink()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), str(ROOT), env.get("PYTHONPATH", "")) if p)
    if n_steps:
        env["AGENT_N_STEPS"] = str(n_steps)
    cmd = [sys.executable, "-m", "agent.pretrain", "--levels", "air.csv", "--envs", str(envs),
           "--timesteps", str(timesteps), "--out", str(out), "--seed", str(seed), "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    match = RATE.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(
            f"pretrain --envs {envs} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    cpu = CPU.search(proc.stdout)
    return {
        "envs": envs,
        "seed": seed,
        "timesteps": timesteps,
        "steps_per_s": float(match.group(1)),
        "cpu_ms_per_timestep": {"learner": float(cpu.group(1)), "env_workers": float(cpu.group(2))} if cpu else None,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="pytorch", choices=("pytorch", "tf"))
    parser.add_argument("--envs", type=int, default=2, help="N, compared with 1 (default 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=4096, help="per run (default 4,096: four updates)")
    parser.add_argument("--n-steps", type=int, default=None, help="AGENT_N_STEPS (default: the template's)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON document here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-pretrain-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    project = scaffold(args.template, work)
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = (1, args.envs) if r % 2 == 0 else (args.envs, 1)
        for n in order:
            runs.append(one_run(project, n, args.timesteps, r, args.n_steps))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    base = statistics.median(x["steps_per_s"] for x in runs if x["envs"] == 1)
    many = statistics.median(x["steps_per_s"] for x in runs if x["envs"] == args.envs)
    document = {
        "what": f"agent.pretrain steps/s, --envs {args.envs} vs --envs 1, Airstriker-Genesis Level1",
        "template": args.template,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "load_average_at_end": os.getloadavg(),
        "rounds": args.rounds,
        "timesteps_per_run": args.timesteps,
        "median_steps_per_s": {"1": base, str(args.envs): many},
        "speedup": many / base,
        "runs": runs,
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=2))
    if args.json:
        print(json.dumps(document))
    else:
        rounds = f"median of {args.rounds} interleaved rounds of {args.timesteps:,}"
        print(f"{args.template}: --envs 1 {base:.0f} steps/s, --envs {args.envs} {many:.0f} steps/s, "
              f"speedup {many / base:.2f}x ({rounds})")  # fmt: skip


if __name__ == "__main__":
    main()
