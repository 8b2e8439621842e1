"""The agents side by side: several ``bench/agents.py`` result files merged into one comparison.

Why a script: the comparison the templates must win (issue 27: template PPO, Stable-Baselines3's
PPO, JERK and the contest's example agent, at least 3 seeds each) is put together from runs taken on
different days; copying their figures into a page by hand would lose where each came from. This
reads the result files, keeps every run with the file (and so the date and conditions) it came
from, and computes per agent what the goals are stated in: the median and the worst seed's
last-20-episode mean, the median contest score (the mean over all episodes, as the contest scores
a level), and timesteps/s with its wall-clock milliseconds per timestep (env and agent together,
and only comparable between runs taken under the same load, which the table says).

    python bench/compare_agents.py bench/results/agents-seeds-ppo.json bench/results/agents-sb3.json \
        bench/results/agents-seeds-baselines.json bench/results/agents-seeds-jerk.json \
        --agents ppo-pytorch,sb3-ppo,jerk,random-right --output bench/results/agents-comparison.json

Rewards are comparable across files: the env and the agent are seeded and step in lockstep, so a
run's rewards do not depend on the machine's load (seed 0 of the template's PPO and of JERK gave the
same figures, episode for episode, in runs days and loads apart). The example agent's own
randomness is not seeded, so each of its runs is its own sample.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from agents import per_agent  # noqa: E402  the median and worst seed, as bench/agents.py's own table has them


def merge(paths: list[Path], agents: list[str] | None) -> dict[str, Any]:
    """The runs of ``paths`` (only ``agents``' when given, each seed of an agent once: the first
    file that has it wins, so a re-run listed later cannot double a seed), and the per-agent figures."""
    runs: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()
    machines: set[str] = set()
    for path in paths:
        document = json.loads(path.read_text())
        for row in document["agents"]:
            key = (row["agent"], row["seed"])
            if (agents and row["agent"] not in agents) or key in seen:
                continue
            seen.add(key)
            machines.add(document["machine"])
            runs.append({**row, "source": path.as_posix(), "source_date": document["date"]})
    order = agents or sorted({r["agent"] for r in runs})
    runs.sort(key=lambda r: (order.index(r["agent"]) if r["agent"] in order else len(order), r["seed"]))
    return {"runs": runs, "summary": summary(runs, order), "machines": sorted(machines)}


def summary(runs: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Per agent: seeds, the median and worst last-20 mean, the median score and speed."""
    out = []
    seeds = per_agent(runs)
    for agent in order:
        mine = [r for r in runs if r["agent"] == agent]
        if not mine:
            continue
        last20 = [r["mean_reward_last20"] for r in mine if r["mean_reward_last20"] is not None]
        score = [r["mean_reward_all"] for r in mine if r["mean_reward_all"] is not None]
        speed = [r["timesteps_per_s"] for r in mine if r.get("timesteps_per_s")]
        out.append(
            {
                "agent": agent,
                "seeds": len(mine),
                "last20_per_seed": last20,
                "median_last20": seeds[agent]["median_last20"],
                "worst_last20": seeds[agent]["worst_last20"],
                "median_score": statistics.median(score) if score else None,
                "median_timesteps_per_s": statistics.median(speed) if speed else None,
                "median_ms_per_timestep": 1000 / statistics.median(speed) if speed else None,
            }
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Merge bench/agents.py result files into one comparison.")
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by bench/agents.py --output")
    parser.add_argument("--agents", default=None, help="comma-separated agents, in the order to show them")
    parser.add_argument("--output", type=Path, default=None, help="write the comparison here (else print it)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        raise SystemExit(f"no such result file: {', '.join(missing)}")
    merged = merge(args.results, args.agents.split(",") if args.agents else None)
    if not merged["runs"]:
        raise SystemExit("no runs of the agents asked for in those files: check --agents")
    document = {
        "what": "agents compared: last-20-episode mean per seed, median and worst seed, contest score, speed",
        "date": datetime.date.today().isoformat(),
        "machine": "; ".join(merged["machines"]),
        "command": "python bench/compare_agents.py " + " ".join(sys.argv[1:] if argv is None else argv),
        **merged,
    }
    text = json.dumps(document, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
