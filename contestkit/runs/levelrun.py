"""One level-run: what it needs, the contest's defaults, and the env program's command line.

A level-run is one agent against one level under the contest's budgets. ``contestkit eval``,
the contest server's evaluator and every launcher (local processes, Docker containers) build it
as a :class:`LevelRunSpec`, so adding an option means touching this spec, the flag that sets it,
and each launcher that honours it. Each field says, in its metadata, who reads it:

* ``env``: the env program (``python -m contestkit.runs.envprogram``); it travels on its command line,
  which :func:`to_argv` and :func:`from_argv` derive from the fields, so the two cannot drift;
* ``agent``: the launchers, for the agent's half (both runtimes);
* ``docker``: the Docker launcher only; the local runtime refuses such an option rather than
  ignore it (:func:`docker_only_given`).

Each launcher also declares the fields it honours (``honours``); ``evaluation.refuse_unhonoured``
refuses, in one sentence, any other field set away from its default (:func:`given_outside`).

This module imports only the standard library (and :mod:`contestkit.runs.cpuset`, which does too): the
agent images import the bridge client, which reads its connect timeout from here.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from contestkit.runs.cpuset import CpuSet

# The contest's defaults, the 2018 evaluation server's, written once.
TIMESTEP_LIMIT = 1_000_000  # timesteps per level
WALLCLOCK_LIMIT = 43_200.0  # seconds per level: 12 hours
CONNECT_TIMEOUT = 300.0  # seconds the env waits for the agent to open the bridge
CONTEST_CPUS = 6.0  # the contest's evaluation VM: 6 cores, 56 GB
CONTEST_MEMORY = "56g"
BRIDGE_TMPFS_SIZE = "64m"  # the bridge volume: a socket and one observation (215 KB)
# Bounds on what one agent can take from the host (issue 23; docs/host-limits-and-abuse.md).
PIDS_LIMIT = 1024  # processes and threads in the agent's container (a fork bomb stops here)
OUT_LIMIT = 10 * 1024**3  # bytes the agent may write into its out/ directory (10 GiB)
LOG_LIMIT = 16 * 1024**2  # bytes of each of the agent's stdout and stderr kept: half head, half tail
ENGINE_LOG_MAX = "10m"  # the Docker engine's own log of each container (log-opts max-size, one file)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def size_bytes(text: str | int, where: str = "size") -> int:
    """``10g``, ``512m``, ``64k`` or a plain number of bytes (Docker's binary units) as bytes."""
    raw = str(text).strip().lower().removesuffix("ib").removesuffix("i")
    number, unit = raw.rstrip("bkmgt"), raw[len(raw.rstrip("bkmgt")) :]
    try:
        value = float(number) * _SIZE_UNITS[unit]
    except (KeyError, ValueError):
        raise ValueError(f"{where}: '{text}' is not a size; write e.g. 10g, 512m or a number of bytes") from None
    if not 0 < value < 2**63:
        raise ValueError(f"{where}: '{text}' must be a positive size")
    return int(value)


class Scope(str, Enum):
    """Who reads a spec field."""

    ENV = "env"  # the env program, through its command line
    AGENT = "agent"  # every launcher, for the agent's half
    DOCKER = "docker"  # the Docker launcher only


def _field(default: Any, scope: Scope, *, parse: Callable[[str], Any] | None = None, factory: Any = None) -> Any:
    meta = {"scope": scope, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class LevelRunSpec:
    """Everything one level-run needs; the defaults are the contest's."""

    game: str = field(metadata={"scope": Scope.ENV, "parse": str})
    state: str | None = _field(None, Scope.ENV, parse=str)
    timestep_limit: int = _field(TIMESTEP_LIMIT, Scope.ENV, parse=int)
    wallclock_limit: float = _field(WALLCLOCK_LIMIT, Scope.ENV, parse=float)
    connect_timeout: float = _field(CONNECT_TIMEOUT, Scope.ENV, parse=float)
    seed: int | None = _field(None, Scope.ENV, parse=int)
    record: bool = _field(False, Scope.ENV)
    expose_info: bool = _field(False, Scope.ENV)  # the game's info dict in each step (training only)
    agent: str | None = _field(None, Scope.AGENT)  # local: PATH.py or MODULE:FUNC
    project_dir: Path | None = _field(None, Scope.AGENT)  # where a local agent's imports resolve
    # The CPUs of both halves; a Linux cpuset list given as text is parsed (and checked) once, here.
    cpuset: CpuSet | None = _field(None, Scope.AGENT)
    env_vars: Mapping[str, str] = _field(None, Scope.AGENT, factory=dict)  # extra environment of the agent
    image: str | None = _field(None, Scope.DOCKER)  # the agent image
    remote_image: str | None = _field(None, Scope.DOCKER)  # None: the toolkit's remote-env image
    gpus: bool = _field(False, Scope.DOCKER)
    cpus: float | None = _field(None, Scope.DOCKER)  # agent CPU limit; None: CONTEST_CPUS
    memory: str | None = _field(None, Scope.DOCKER)  # agent memory limit; None: CONTEST_MEMORY
    bridge_tmpfs_size: str = _field(BRIDGE_TMPFS_SIZE, Scope.DOCKER)
    pids_limit: int = _field(PIDS_LIMIT, Scope.DOCKER)  # processes in the agent's container
    log_limit: int = _field(LOG_LIMIT, Scope.DOCKER)  # bytes kept of each of stdout/stderr (head + tail)
    out_limit: int = _field(OUT_LIMIT, Scope.AGENT)  # bytes the agent may write into out/; over: stopped

    def __post_init__(self) -> None:
        if isinstance(self.cpuset, str):
            object.__setattr__(self, "cpuset", CpuSet.parse(self.cpuset))

    def replace(self, **changes: Any) -> LevelRunSpec:
        return dataclasses.replace(self, **changes)

    @property
    def agent_cpus(self) -> float:
        return self.cpus if self.cpus is not None else CONTEST_CPUS

    @property
    def agent_memory(self) -> str:
        return self.memory or CONTEST_MEMORY

    def env_options(self) -> dict[str, Any]:
        """The fields the env program receives, as it records them in remote-status.json."""
        return {f.name: getattr(self, f.name) for f in fields_of(Scope.ENV)}


def fields_of(scope: Scope) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(LevelRunSpec) if f.metadata["scope"] is scope]


def default_of(f: dataclasses.Field) -> Any:
    """A field's default (``dataclasses.MISSING`` for ``game``, which has none)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def given_outside(spec: LevelRunSpec, honoured: frozenset[str]) -> list[str]:
    """The flags of fields set away from their default that a launcher honouring ``honoured`` would ignore."""
    return [
        _flag(f.name)
        for f in dataclasses.fields(LevelRunSpec)
        if f.name not in honoured and f.name != "game" and getattr(spec, f.name) != default_of(f)
    ]


def scope_names(*scopes: Scope) -> frozenset[str]:
    """The names of the fields of ``scopes`` (what a launcher declares it honours)."""
    return frozenset(f.name for scope in scopes for f in fields_of(scope))


def docker_only_given(spec: LevelRunSpec) -> list[str]:
    """The flags of Docker-only options set away from their default (what the local runtime refuses)."""
    return [_flag(f.name) for f in fields_of(Scope.DOCKER) if getattr(spec, f.name) != default_of(f)]


@dataclass(frozen=True)
class EnvPlacement:
    """Where this launch of the env program works: not what the run is, but where it happens."""

    bridge_dir: Path
    results_dir: Path
    rom_dir: Path | None = None  # containers: import the ROMs found here first
    chown: str | None = None  # containers: UID:GID to give the results to at the end


_PLACEMENT_FLAGS = ("bridge_dir", "results_dir", "rom_dir", "chown")


def to_argv(spec: LevelRunSpec, where: EnvPlacement) -> list[str]:
    """The env program's arguments for ``spec``: every ``env`` field, then where it works."""
    argv: list[str] = []
    for f in fields_of(Scope.ENV):
        value = getattr(spec, f.name)
        if f.metadata["parse"] is None:  # a switch
            if value:
                argv.append(_flag(f.name))
        elif value is not None:
            argv += [_flag(f.name), str(value)]
    for name in _PLACEMENT_FLAGS:
        value = getattr(where, name)
        if value is not None:
            argv += [_flag(name), str(value)]
    return argv


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m contestkit.runs.envprogram", description="The contest's env program.")
    for f in fields_of(Scope.ENV):
        if f.metadata["parse"] is None:
            ap.add_argument(_flag(f.name), dest=f.name, action="store_true")
        elif f.default is dataclasses.MISSING:
            ap.add_argument(_flag(f.name), dest=f.name, type=f.metadata["parse"], required=True)
        else:
            ap.add_argument(_flag(f.name), dest=f.name, type=f.metadata["parse"], default=f.default)
    ap.add_argument("--bridge-dir", type=Path, required=True)
    ap.add_argument("--results-dir", type=Path, required=True)
    ap.add_argument("--rom-dir", type=Path, default=None)
    ap.add_argument("--chown", default=None)
    return ap


def from_argv(argv: list[str] | None) -> tuple[LevelRunSpec, EnvPlacement]:
    """The inverse of :func:`to_argv` (``None``: this process's arguments)."""
    ns = vars(_parser().parse_args(argv))
    where = EnvPlacement(**{name: ns.pop(name) for name in _PLACEMENT_FLAGS})
    return LevelRunSpec(**ns), where
