"""Pretrain, then fine-tune: does starting evaluation from a pretrained checkpoint pay?

One ``python -m agent.pretrain`` on Airstriker-Genesis Level1 for ``--pretrain`` timesteps
(seed ``--pretrain-seed``), then, for each seed, a normal ``contestkit eval --runtime local`` of
``--eval`` timesteps starting from that checkpoint (``AGENT_INIT_CHECKPOINT``), against the same
evaluation from random weights. One checkpoint serves every seed: what the seeds sample is
fine-tuning (the agent's own sampling and the env's sticky frames), as in the contest, where a team
ships one checkpoint and it meets every test level. Pretraining one per seed would triple the
longest part of the benchmark (about an hour per 500,000 timesteps on two cores).
Reports each evaluation's mean episode reward (the contest's score for the level) and draws both
learning curves (episode reward against timestep, averaged over seeds) in one SVG.

Airstriker is a single level, so this measures warm-starting on the level itself, not
generalisation to unseen levels (the contest's case, which needs the Sonic ROMs).

    python bench/finetune.py --parallel 2 --threads 1 --work-dir ~/bench-finetune \
        --output bench/results/finetune.json --svg bench/results/finetune.svg
    python bench/finetune.py --pretrain 20000 --eval 5000 --seeds 0     # a quick look
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.agents import machine, thread_env  # noqa: E402
from bench.curves import curves_svg, episodes  # noqa: E402
from bench.pretrain import scaffold  # noqa: E402

GAME, STATE = "Airstriker-Genesis", "Level1"
STARTS = ("pretrained", "scratch")


def _env(project: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project), str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def pretrain(project: Path, seed: int, timesteps: int, envs: int, work: Path) -> Path:
    framework = (project / "agent" / "framework.py").read_text()
    suffix = ".pt" if '".pt"' in framework else ".npz"
    out = work / f"pretrained-seed{seed}{suffix}"
    cmd = [sys.executable, "-m", "agent.pretrain", "--levels", "air.csv", "--envs", str(envs),
           "--timesteps", str(timesteps), "--out", str(out), "--seed", str(seed), "--no-progress"]  # fmt: skip
    # An earlier, interrupted run of this benchmark is resumed; a finished one is reused as it is.
    proc = subprocess.run(cmd, cwd=project, env=_env(project), capture_output=True, text=True)
    if "already holds" not in proc.stderr:
        _check(proc, f"pretraining seed {seed}")
    return out


def evaluate(
    project: Path, seed: int, timesteps: int, init: Path | None, results: Path, threads: int | None
) -> dict[str, Any]:
    """One ``contestkit eval``; its episodes as (end timestep, reward) and its score."""
    env = _env(
        project,
        AGENT_SEED=str(seed),
        AGENT_TOTAL_TIMESTEPS=str(timesteps),
        AGENT_INIT_CHECKPOINT=str(init) if init else "none",
    )
    if threads:
        env.update(thread_env(threads), AGENT_THREADS=str(threads))
    cmd = [sys.executable, "-m", "contestkit", "eval", GAME, STATE, "--runtime", "local", "--seed", str(seed),
           "--timestep-limit", str(timesteps), "--results-dir", str(results), "--force"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
    _check(proc, f"eval seed {seed} ({'pretrained' if init else 'scratch'})")
    curve = episodes(results / "monitor.csv")
    rewards = [reward for _, reward in curve]
    stdout = (results / "agent-stdout.txt").read_text()
    if init is not None and f"fine-tuning from {init}" not in stdout:
        raise SystemExit(f"the agent did not start from {init}:\n{stdout[-2000:]}")
    return {
        "seed": seed,
        "start": "pretrained" if init else "scratch",
        "episodes": len(rewards),
        "score": statistics.fmean(rewards) if rewards else None,
        "mean_reward_last20": statistics.fmean(rewards[-20:]) if rewards else None,
        "results_dir": str(results),  # for bench/curves.py, to redraw the picture later
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="pytorch", choices=("pytorch", "tf"))
    parser.add_argument("--pretrain", type=int, default=500_000, help="pretraining timesteps (default 500,000)")
    parser.add_argument("--eval", type=int, default=100_000, help="evaluation timesteps (default 100,000)")
    parser.add_argument("--envs", type=int, default=2, help="pretraining envs (default 2)")
    parser.add_argument("--seeds", default="0,1,2", help="evaluation seeds, each run both ways")
    parser.add_argument("--pretrain-seed", type=int, default=0)
    parser.add_argument("--parallel", type=int, default=1, help="evaluations run at once (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="math threads per evaluation (default: all)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="JSON, rewritten after every finished run")
    parser.add_argument("--svg", type=Path, default=None, help="the two learning curves")
    args = parser.parse_args()
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-finetune-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    project = scaffold(args.template, work)
    runs: list[dict[str, Any]] = []
    title = f"{GAME} {STATE}: eval of {args.eval:,} from a {args.pretrain:,}-timestep checkpoint vs scratch"

    def summary() -> dict[str, Any]:
        by_start = {
            start: [r["score"] for r in runs if r["start"] == start and r["score"] is not None] for start in STARTS
        }
        return {
            "what": f"pretrain {args.pretrain:,} then eval {args.eval:,} from the checkpoint vs from scratch",
            "title": title,
            "game": GAME,
            "state": STATE,
            "pretrain_timesteps": args.pretrain,
            "eval_timesteps": args.eval,
            "template": args.template,
            "pretrain_seed": args.pretrain_seed,
            "parallel": args.parallel,
            "threads": args.threads,
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "runs": [{k: v for k, v in r.items() if k != "curve"} for r in runs],
            "mean_score": {k: statistics.fmean(v) if v else None for k, v in by_start.items()},
        }

    ckpt = pretrain(project, args.pretrain_seed, args.pretrain, args.envs, work)
    plan = [(seed, init) for seed in (int(s) for s in args.seeds.split(",")) for init in (ckpt, None)]

    def one(seed: int, init: Path | None) -> dict[str, Any]:
        results = work / f"eval-seed{seed}-{'pretrained' if init else 'scratch'}"
        return evaluate(project, seed, args.eval, init, results, args.threads)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        for done in concurrent.futures.as_completed([pool.submit(one, seed, init) for seed, init in plan]):
            runs.append(done.result())
            runs.sort(key=lambda r: (r["seed"], r["start"]))
            if args.output:
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(summary(), indent=2))
            if args.svg:
                groups = {start: [r["curve"] for r in runs if r["start"] == start] for start in STARTS}
                curves_svg(groups, args.eval, args.svg, title)
    print(json.dumps(summary(), indent=2))


if __name__ == "__main__":
    main()
