"""What a runtime must provide: start the env side and the agent side, report, stop, clean up.

Runtimes differ only in *how* they launch the two halves (local processes, Docker containers).
Everything else, from the env program to the bridge, the results and the scoring, is shared and
lives in :mod:`contestkit.evaluation`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from contestkit.games import Level


@dataclass
class LaunchSpec:
    """Everything a launcher needs to start one level's evaluation."""

    level: Level
    results_dir: Path
    timestep_limit: int
    wallclock_limit: float
    seed: int | None
    record: bool
    connect_timeout: float
    agent: str | None = None  # local: PATH.py or MODULE:FUNC
    image: str | None = None  # docker: the agent image
    project_dir: Path | None = None
    gpus: bool = False
    cpus: float | None = None
    cpuset: tuple[int, ...] | None = None  # both halves run on these CPUs
    memory: str | None = None
    env_vars: dict[str, str] = field(default_factory=dict)


def remote_args(spec: LaunchSpec, bridge_dir: str, results_dir: str) -> list[str]:
    """Arguments of the env program (``python -m contestkit.remote``), the same in every runtime."""
    args = [
        "--game", spec.level.game,
        "--state", spec.level.state,
        "--bridge-dir", bridge_dir,
        "--results-dir", results_dir,
        "--timestep-limit", str(spec.timestep_limit),
        "--wallclock-limit", str(spec.wallclock_limit),
        "--connect-timeout", str(spec.connect_timeout),
    ]  # fmt: skip
    if spec.seed is not None:
        args += ["--seed", str(spec.seed)]
    if spec.record:
        args.append("--record")
    return args


def agent_command(agent: str, python: str = sys.executable) -> list[str]:
    """How to run an agent given as a script path or as ``module:function``."""
    if ":" in agent and not agent.endswith(".py") and not Path(agent).exists():
        module, _, func = agent.partition(":")
        code = (
            "import importlib, sys; sys.path.insert(0, ''); "
            "getattr(importlib.import_module(sys.argv[1]), sys.argv[2])()"
        )
        return [python, "-u", "-c", code, module, func]
    return [python, "-u", str(Path(agent).absolute())]


class Session(Protocol):
    """A running evaluation: the two halves, their exit statuses, and how to stop them."""

    def env_exit(self) -> int | None: ...

    def agent_exit(self) -> int | None: ...

    def stop_agent(self, grace: float) -> None: ...

    def stop_env(self, grace: float) -> None: ...

    def close(self) -> None:
        """Remove everything the session made outside the results directory (always safe)."""


class Launcher(Protocol):
    name: str

    def check(self, spec: LaunchSpec) -> None:
        """Raise a ContestkitError for what would stop ``start``; create and change nothing."""

    def start(self, spec: LaunchSpec) -> Session:
        """Start both halves of a spec that ``check`` passed."""
