"""What a runtime must provide: start the env side and the agent side, report, stop, clean up.

Runtimes differ only in *how* they launch the two halves (local processes, Docker containers).
Everything else, from the env program to the bridge, the results and the scoring, is shared and
lives in :mod:`contestkit.runs.evaluation`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

from contestkit.runs.levelrun import LevelRunSpec
from contestkit.states import Word

ENV_PROGRAM = "contestkit.runs.envprogram"  # run as ``python -m``; the remote-env image's entry point


class Runtime(Word):
    """Where an evaluation's two halves run: ``--runtime`` of ``contestkit eval``, each launcher's
    ``name``, and the ``runtime`` of ``summary.json``'s ``source``. One home, so the word that picks a
    runtime is the word a result records."""

    AUTO = "auto"  # a choice only: docker when an engine answers and there is an image to run, else local
    DOCKER = "docker"
    LOCAL = "local"
    KUBERNETES = "kubernetes"  # the contest server's executor only; ``contestkit eval`` refuses it


#: What ``contestkit eval --runtime`` offers: every runtime but Kubernetes, which only a contest server
#: drives. The same words as :class:`Runtime`, derived so that a runtime is still named in one place.
EvalRuntime = Word("EvalRuntime", {r.name: r.value for r in Runtime if r is not Runtime.KUBERNETES})


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
    name: Runtime
    honours: frozenset[str]  # the LevelRunSpec fields it honours; any other set is refused, never ignored

    def check(self, spec: LevelRunSpec) -> None:
        """Raise a ContestkitError for what would stop ``start``; create and change nothing."""

    def start(self, spec: LevelRunSpec, results_dir: Path) -> Session:
        """Start both halves of a spec that ``check`` passed, writing into ``results_dir``.

        The env half runs :data:`ENV_PROGRAM` with ``levelrun.to_argv(spec, ...)``: every ``env``
        field of the spec reaches it that way, whatever the runtime.
        """
