"""Do the agents learn? Each agent on Airstriker-Genesis Level1 for a fixed timestep budget.

Runs random (every button pressed with probability 1/2: the random template), random-right (the
contest's own example agent: random buttons with RIGHT held, examples/random_agent.py), JERK
(examples/jerk_agent.py), Stable-Baselines3's PPO with RL Zoo's Atari settings (bench/sb3_agent.py,
which says what the contest forced it to adapt), and the PPO templates (PyTorch and TensorFlow),
each template scaffolded fresh with ``contestkit new`` exactly as a user gets it, through
``contestkit eval --runtime local``, then reports, per agent, the mean reward of the last 20
episodes (what the agent plays like at the end of its budget), the mean over all episodes (the
contest's score for the level) and timesteps/s.

    python bench/agents.py                              # 200k timesteps each, all agents
    python bench/agents.py --timesteps 50000 --agents random,ppo-pytorch
    python bench/agents.py --parallel 2 --json          # two agents at a time (one core each)
    python bench/agents.py --seeds 0,1,2 --output bench/results/agents.json   # per seed, median, worst

With ``--seeds``, every agent runs once per seed (PPO: ``AGENT_SEED``, JERK: ``JERK_SEED``, the
env's sticky frame skip: ``--seed``), the table gains per agent the median and the worst seed's
last-20-episode mean, and ``--output`` is rewritten after every finished run, so a benchmark cut
short still leaves what it measured.

``--runtime inproc`` steps the contest env in the agent's own process instead (no bridge, no
``contestkit eval``); the env and the agents' code are the same, so the scores are comparable.
Results (each run's results directory, and ``agents.json``) stay under ``--results-dir``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GAME, STATE = "Airstriker-Genesis", "Level1"
AGENTS = ("random", "random-right", "jerk", "sb3-ppo", "ppo-pytorch", "ppo-tf")
TEMPLATES = {"random": "random", "ppo-pytorch": "pytorch", "ppo-tf": "tf"}


def machine() -> str:
    """CPU model and core count, for the table's caption."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def thread_env(threads: int) -> dict[str, str]:
    """Math-library thread caps, so agents running side by side do not fight over cores."""
    n = str(threads)
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    return dict.fromkeys(names, n)


def episode_rewards(monitor: Path) -> list[float]:
    """Each finished episode's reward, read by the same parser the eval's own summary uses."""
    sys.path.insert(0, str(ROOT))
    from contestkit.runs.results import read_monitor

    return [reward for reward, _length, _t in read_monitor(monitor)]


def summarize(agent: str, rewards: list[float], timesteps: int, seconds: float) -> dict[str, Any]:
    last = rewards[-20:]
    first = rewards[:20]
    return {
        "agent": agent,
        "timesteps": timesteps,
        "episodes": len(rewards),
        "mean_reward_last20": sum(last) / len(last) if last else None,
        "mean_reward_first20": sum(first) / len(first) if first else None,
        "mean_reward_all": sum(rewards) / len(rewards) if rewards else None,
        "best_episode": max(rewards) if rewards else None,
        "seconds": seconds,
        "timesteps_per_s": timesteps / seconds if seconds else None,
    }


# -- through contestkit eval ---------------------------------------------------------------------
def seed_env(agent: str, seed: int, timesteps: int) -> dict[str, str]:
    """The seed of an agent's own randomness, and the budget its schedules span."""
    if agent.startswith("ppo-") or agent == "sb3-ppo":
        # The PPO's learning-rate and clip schedules span the budget it is given, as in evaluation.
        return {"AGENT_SEED": str(seed), "AGENT_TOTAL_TIMESTEPS": str(timesteps)}
    if agent == "jerk":
        return {"JERK_SEED": str(seed), "JERK_TOTAL_TIMESTEPS": str(timesteps)}
    return {}


def eval_agent(agent: str, timesteps: int, out: Path, threads: int | None, seed: int = 0) -> dict[str, Any]:
    """One agent through ``contestkit eval --runtime local``: the way users run it."""
    env = dict(os.environ, **seed_env(agent, seed, timesteps))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if threads:
        env.update(thread_env(threads), AGENT_THREADS=str(threads))
    results = out / agent / f"seed{seed}"
    cwd = ROOT
    extra: list[str] = ["--seed", str(seed)]
    if agent == "random-right":
        extra += ["--agent", str(ROOT / "examples" / "random_agent.py")]
    elif agent == "jerk":
        extra += ["--agent", str(ROOT / "examples" / "jerk_agent.py")]
    elif agent == "sb3-ppo":
        extra += ["--agent", str(ROOT / "bench" / "sb3_agent.py")]
    elif agent in TEMPLATES:
        sys.path.insert(0, str(ROOT))
        from contestkit.projects.scaffold import create_project

        projects = out / "projects"
        name = f"bench-{agent}"
        project = projects / name
        if not project.exists():
            create_project(name, template=TEMPLATES[agent], directory=projects)
        cwd = project
        extra += ["--agent", "agent.main:main"]  # the project's entry, spelled out
    else:
        raise SystemExit(f"unknown agent {agent!r}; choose from {', '.join(AGENTS)}")
    cmd = [sys.executable, "-m", "contestkit", "eval", GAME, STATE, "--runtime", "local",
           "--timestep-limit", str(timesteps), "--wallclock-limit", str(24 * 3600),
           "--results-dir", str(results), "--force", *extra]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    monitor = results / "monitor.csv"
    if not monitor.exists():
        raise SystemExit(
            f"{agent}: no monitor.csv (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        )
    summary = json.loads((results / "summary.json").read_text()) if (results / "summary.json").exists() else {}
    row = summarize(agent, episode_rewards(monitor), int(summary.get("timesteps") or timesteps), seconds)
    row.update(seed=seed, exit_code=proc.returncode, results_dir=str(results))
    return row


# -- in-process ----------------------------------------------------------------------------------
def inproc_worker(agent: str, timesteps: int, results: Path, seed: int) -> None:
    """Run one agent with the contest env stepped in this process; writes monitor.csv."""
    import numpy as np

    from contestkit.bridge.errors import TimestepTimeoutError
    from contestkit.env.envs import make_contest_env

    class Budgeted:
        """The contest env with the bridge's budget error and a monitor, without the bridge."""

        def __init__(self) -> None:
            self.env = make_contest_env(GAME, STATE, seed=seed)
            self.buttons, self.game, self.state = list(self.env.buttons), GAME, STATE
            self.t = 0
            self.ep_r = 0.0
            self.ep_l = 0
            self.start = time.monotonic()
            results.mkdir(parents=True, exist_ok=True)
            self.monitor = (results / "monitor.csv").open("w")
            self.monitor.write("r,l,t\n")

        def reset(self, **_: Any) -> tuple[Any, dict]:
            self.ep_r, self.ep_l = 0.0, 0
            return self.env.reset()

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
            if self.t >= timesteps:
                raise TimestepTimeoutError("timestep budget used up")
            obs, r, term, trunc, info = self.env.step(action)
            self.t += 1
            self.ep_r += r
            self.ep_l += 1
            if term or trunc:
                self.monitor.write(f"{self.ep_r},{self.ep_l},{time.monotonic() - self.start:.3f}\n")
                self.monitor.flush()
            return obs, r, term, trunc, info

    class OldApi:
        def __init__(self, env: Budgeted) -> None:
            self.env, self.buttons = env, env.buttons

        def reset(self) -> Any:
            return self.env.reset()[0]

        def step(self, a: Any) -> tuple[Any, float, bool, dict]:
            obs, r, term, trunc, info = self.env.step(a)
            return obs, r, term or trunc, info

    env = Budgeted()
    if agent in ("ppo-pytorch", "ppo-tf", "random"):
        # A fresh project, as `contestkit new` makes it (the PPO templates are layered).
        from contestkit.projects.scaffold import create_project

        project = create_project("bench-agent", TEMPLATES[agent], directory=tempfile.mkdtemp(prefix="agents-"))
        sys.path.insert(0, str(project.path))
    if agent in ("ppo-pytorch", "ppo-tf"):
        from agent.config import Config  # type: ignore[import-not-found]
        from agent.main import run  # type: ignore[import-not-found]

        cfg = Config.from_env()
        cfg.out_dir = str(results / "out")
        run(env, cfg)
    elif agent == "random":
        from agent.main import run as run_random  # type: ignore[import-not-found]

        run_random(env, seed=seed)
    elif agent == "random-right":
        rng = np.random.default_rng(seed)
        try:
            env.reset()
            while True:  # the contest's example agent: random buttons, RIGHT held
                action = rng.integers(0, 2, 12).astype(np.uint8)
                action[7] = 1
                _, _, term, trunc, _ = env.step(action)
                if term or trunc:
                    env.reset()
        except TimestepTimeoutError:
            pass
    elif agent == "jerk":
        sys.path.insert(0, str(ROOT / "examples"))
        os.environ["JERK_TOTAL_TIMESTEPS"] = str(timesteps)
        import jerk_agent  # type: ignore[import-not-found]

        jerk_agent.TOTAL_TIMESTEPS = timesteps
        try:
            jerk_agent.run(jerk_agent.TrackedEnv(OldApi(env)))  # type: ignore[arg-type]
        except TimestepTimeoutError:
            pass
    elif agent == "sb3-ppo":
        sys.path.insert(0, str(ROOT / "bench"))
        import sb3_agent  # type: ignore[import-not-found]

        _venv, model = sb3_agent.build(sb3_agent.ContestEnv(env), seed, timesteps)  # type: ignore[arg-type]
        try:
            model.learn(total_timesteps=timesteps + 1)
        except TimestepTimeoutError:
            pass
    env.monitor.close()
    (results / "summary.json").write_text(json.dumps({"timesteps": env.t}))


def inproc_agent(agent: str, timesteps: int, out: Path, threads: int | None, seed: int) -> dict[str, Any]:
    env = dict(os.environ, **seed_env(agent, seed, timesteps))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if threads:
        env.update(thread_env(threads), AGENT_THREADS=str(threads))
    results = out / agent / f"seed{seed}"
    cmd = [sys.executable, __file__, "--worker", agent, "--timesteps", str(timesteps),
           "--results-dir", str(results), "--seed", str(seed)]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - start
    results.mkdir(parents=True, exist_ok=True)
    (results / "worker.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{agent} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    row = summarize(agent, episode_rewards(results / "monitor.csv"), timesteps, seconds)
    row.update(seed=seed, exit_code=proc.returncode, results_dir=str(results))
    return row


def table(rows: list[dict[str, Any]], timesteps: int, runtime: str) -> str:
    def num(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    lines = [
        f"{GAME} {STATE}, {timesteps:,} timesteps per agent, runtime {runtime}; "
        f"{datetime.date.today().isoformat()}, {machine()}",
        "",
        "| agent | seed | mean reward, last 20 episodes | first 20 | all episodes | episodes | timesteps/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['agent']} | {r.get('seed', '-')} | {num(r['mean_reward_last20'])} | {num(r['mean_reward_first20'])} "
            f"| {num(r['mean_reward_all'])} | {r['episodes']} | {num(r['timesteps_per_s'], '.0f')} |"
        )
    lines += ["", "| agent | seeds | median of last-20 means | worst seed |", "| --- | ---: | ---: | ---: |"]
    for agent, s in per_agent(rows).items():
        lines.append(f"| {agent} | {s['seeds']} | {num(s['median_last20'])} | {num(s['worst_last20'])} |")
    return "\n".join(lines)


def per_agent(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Across seeds: the median and the worst of the last-20-episode means."""
    import statistics

    out: dict[str, dict[str, Any]] = {}
    for agent in dict.fromkeys(r["agent"] for r in rows):
        scores = [r["mean_reward_last20"] for r in rows if r["agent"] == agent and r["mean_reward_last20"] is not None]
        out[agent] = {
            "seeds": len(scores),
            "median_last20": statistics.median(scores) if scores else None,
            "worst_last20": min(scores) if scores else None,
        }
    return out


def agent_overrides() -> dict[str, str]:
    """The agents' knobs set in this process's environment, which every run inherits."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(("AGENT_", "JERK_"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated: " + ", ".join(AGENTS))
    parser.add_argument("--timesteps", type=int, default=200_000, help="budget per agent (default 200,000)")
    parser.add_argument("--runtime", choices=("local", "inproc"), default="local")
    parser.add_argument("--parallel", type=int, default=1, help="agents run at once (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="math threads per agent (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", default=None, help="comma-separated seeds, each agent once per seed (default: --seed)"
    )
    parser.add_argument("--output", type=Path, default=None, help="JSON results, rewritten after every finished run")
    parser.add_argument("--results-dir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        inproc_worker(args.worker, args.timesteps, args.results_dir, args.seed)
        return
    out = (args.results_dir or Path(tempfile.mkdtemp(prefix="bench-agents-"))).absolute()
    out.mkdir(parents=True, exist_ok=True)
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else None)

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    # Seed-major order: a run cut short has every agent at the first seeds rather than one agent at all.
    jobs = [(agent, seed) for seed in seeds for agent in agents]
    rows: list[dict[str, Any]] = []

    def document() -> dict[str, Any]:
        return {
            "game": GAME,
            "state": STATE,
            "timesteps": args.timesteps,
            "runtime": args.runtime,
            "date": datetime.date.today().isoformat(),
            "machine": machine(),
            "command": "python bench/agents.py " + " ".join(sys.argv[1:]),  # the docs site shows it
            "parallel": args.parallel,
            "seeds": seeds,
            # Settings given to the agents through the environment (AGENT_LEARNING_RATE=5e-4 ...):
            # a run with them is a different experiment, and its JSON must say so.
            "agent_overrides": agent_overrides(),
            "finished": f"{len(rows)} of {len(jobs)} runs",
            "agents": rows,
            "per_agent": per_agent(rows),
        }

    def one(job: tuple[str, int]) -> dict[str, Any]:
        agent, seed = job
        if args.runtime == "local":
            row = eval_agent(agent, args.timesteps, out, threads, seed)
        else:
            row = inproc_agent(agent, args.timesteps, out, threads, seed)
        rows.append(row)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(document(), indent=2))
        return row

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        list(pool.map(one, jobs))
    rows.sort(key=lambda r: (agents.index(r["agent"]), r["seed"]))
    (out / "agents.json").write_text(json.dumps(document(), indent=2))
    if args.json:
        print(json.dumps(document()))
    else:
        print(table(rows, args.timesteps, args.runtime))
        print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
