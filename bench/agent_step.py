"""The agents' own time per timestep, without the env: does each fit the contest's budget?

The 2018 evaluation machine gave an agent 12 hours for 1,000,000 timesteps, about 43 ms per
timestep of which the env took ~4 ms; whatever the agent does (preprocessing, acting, learning)
must fit the rest. This benchmark feeds each agent real Airstriker screens from a replay env that
costs nothing, and times only the agent: from the moment ``step``/``reset`` returns to the moment
the agent calls ``step`` again. Learning agents are timed over whole rollouts (acting plus their
PPO updates, amortised over the timesteps), after a warm-up rollout so one-off costs (TensorFlow
tracing) are left out.

    python bench/agent_step.py                      # all agents, table
    python bench/agent_step.py --agents ppo-pytorch --timesteps 8192 --json

Each agent runs in its own process with the threads it would get on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MS = 43.0
AGENTS = ("random", "jerk", "ppo-pytorch", "ppo-tf")
TEMPLATES = {"ppo-pytorch": "pytorch", "ppo-tf": "tf", "random": "random"}


def scaffolded(agent: str) -> str:
    """A fresh project of the agent's template, exactly as ``contestkit new`` makes it."""
    from contestkit.projects.scaffold import create_project

    return str(create_project("bench-agent", TEMPLATES[agent], directory=tempfile.mkdtemp(prefix="agent-step-")).path)


def record_frames(n: int = 256, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Real Airstriker screens (random play), so preprocessing sees what it sees in a run."""
    from contestkit.env.envs import make_contest_env

    env = make_contest_env("Airstriker-Genesis", "Level1", seed=seed)
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, 224, 320, 3), np.uint8)
    obs, _ = env.reset()
    for i in range(n):
        frames[i] = obs
        obs, _, terminated, truncated, _ = env.step(rng.integers(0, 2, 12))
        if terminated or truncated:
            obs, _ = env.reset()
    buttons = list(env.buttons)
    env.close()
    return frames, buttons


class ReplayEnv:
    """Serves recorded screens instantly and times the agent between calls (gymnasium API).

    Episodes are ``episode_length`` timesteps; after ``warmup + limit`` steps the next call raises
    the timestep-budget error, exactly as the real bridge does, so agents end as in a real run.
    """

    def __init__(self, frames: np.ndarray, buttons: list[str], limit: int, warmup: int, episode_length: int) -> None:
        from contestkit.bridge.errors import TimestepTimeoutError

        self._error = TimestepTimeoutError
        self.frames = frames
        self.buttons = buttons
        self.game = "Airstriker-Genesis"
        self.state = "Level1"
        self.limit = limit
        self.warmup = warmup
        self.episode_length = episode_length
        self.steps = 0
        self.t = 0
        self.rng = np.random.default_rng(1)
        self.step_times: list[float] = []
        self._returned = 0.0

    def _agent_time(self) -> None:
        now = time.perf_counter()
        if self.steps > self.warmup and self._returned:
            self.step_times.append(now - self._returned)

    def reset(self, **_: Any) -> tuple[np.ndarray, dict]:
        self.t = 0
        return self.frames[self.steps % len(self.frames)], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._agent_time()
        if self.steps >= self.warmup + self.limit:
            raise self._error("timestep budget used up")
        np.asarray(action)
        self.steps += 1
        self.t += 1
        obs = self.frames[self.steps % len(self.frames)]
        reward = float(self.rng.random() < 0.05) * 20.0
        done = self.t >= self.episode_length
        self._returned = time.perf_counter()
        return obs, reward, done, False, {}

    def close(self) -> None:
        pass


class OldApi:
    """The 2018 4-tuple API over :class:`ReplayEnv` (for JERK)."""

    def __init__(self, env: ReplayEnv) -> None:
        self.env = env
        self.buttons = env.buttons

    def reset(self) -> np.ndarray:
        return self.env.reset()[0]

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, info


def worker(agent: str, timesteps: int) -> dict[str, Any]:
    """Run one agent against the replay env in this process; the timing record."""
    frames, buttons = record_frames()
    if agent in ("ppo-pytorch", "ppo-tf"):
        sys.path.insert(0, scaffolded(agent))
        from agent.config import Config  # type: ignore[import-not-found]
        from agent.main import run  # type: ignore[import-not-found]

        cfg = Config.from_env()
        cfg.out_dir = tempfile.mkdtemp(prefix="agent-step-")
        cfg.log_every = 10**12
        cfg.checkpoint_every = 10**12
        # Warm-up: one full rollout and update, so the measurement is steady state.
        env = ReplayEnv(frames, buttons, timesteps, warmup=cfg.n_steps + 1, episode_length=400)
        run(env, cfg)
        extra = {"n_steps": cfg.n_steps, "n_epochs": cfg.n_epochs, "device": cfg.device}
    elif agent == "random":
        sys.path.insert(0, scaffolded(agent))
        from agent.main import run  # type: ignore[import-not-found]

        env = ReplayEnv(frames, buttons, timesteps, warmup=100, episode_length=400)
        run(env)
        extra = {}
    elif agent == "jerk":
        sys.path.insert(0, str(ROOT / "examples"))
        import jerk_agent  # type: ignore[import-not-found]

        env = ReplayEnv(frames, buttons, timesteps, warmup=100, episode_length=400)
        try:
            jerk_agent.run(jerk_agent.TrackedEnv(OldApi(env)))  # type: ignore[arg-type]
        except env._error:
            pass
        extra = {}
    else:
        raise SystemExit(f"unknown agent {agent!r}; choose from {', '.join(AGENTS)}")
    times = np.array(env.step_times) * 1000.0
    return {
        "agent": agent,
        "timesteps": int(len(times)),
        "mean_ms": float(times.mean()),
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "max_ms": float(times.max()),
        "budget_ms": BUDGET_MS,
        "within_budget": bool(times.mean() < BUDGET_MS),
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default=",".join(AGENTS), help="comma-separated: " + ", ".join(AGENTS))
    parser.add_argument("--timesteps", type=int, default=4096, help="measured timesteps per agent")
    parser.add_argument("--json", action="store_true", help="one JSON line per agent instead of a table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.timesteps)), flush=True)
        return
    rows = []
    for agent in [a.strip() for a in args.agents.split(",") if a.strip()]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", agent, "--timesteps", str(args.timesteps)],
            capture_output=True, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            sys.exit(f"{agent} failed (exit {proc.returncode}):\n{tail}")
        row = json.loads(lines[-1][len("RESULT ") :])
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"agent time per timestep (env excluded), budget {BUDGET_MS:g} ms, {os.cpu_count()} CPU cores")
        print(f"| agent | mean ms | p50 ms | p99 ms | max ms | share of {BUDGET_MS:g} ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            share = 100 * r["mean_ms"] / BUDGET_MS
            print(
                f"| {r['agent']} | {r['mean_ms']:.3f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
                f"| {r['max_ms']:.1f} | {share:.1f}% |"
            )


if __name__ == "__main__":
    main()
