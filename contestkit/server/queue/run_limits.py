"""What one level-run may take from the host, from ``server.yaml`` (issue 23).

The settings, their defaults and what a team sees at each limit are in
``docs/host-limits-and-abuse.md``; the defaults themselves live in ``contestkit.runs.levelrun``:

- ``agent_memory`` (default the contest's 56g): capped at the memory this host has, with a warning
  at start when lowered (Docker refuses nothing above it, but the host would swap or OOM instead);
- ``agent_pids_limit`` (1024): processes and threads in the agent's container;
- ``agent_out_limit`` (10g): what the agent may write into out/; over it, the level is stopped as the
  team's failure;
- ``agent_log_limit`` (16m): bytes kept of each of the agent's stdout and stderr, head and tail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from contestkit.errors import UsageError
from contestkit.runs import levelrun


@dataclass(frozen=True)
class AgentLimits:
    """The limits every level-run of this server gets."""

    memory: str
    pids: int
    out_bytes: int
    log_bytes: int


def host_memory() -> int:
    """Bytes of memory this host has."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(value: str | None, default: int, key: str) -> int:
    if value is None:
        return default
    try:
        return levelrun.size_bytes(value, f"server.yaml '{key}'")
    except ValueError as exc:
        raise UsageError(f"{exc}.") from None


def agent_limits(
    memory: str, pids: int, out_limit: str | None, log_limit: str | None, *, host_bytes: int | None = None
) -> tuple[AgentLimits, list[str]]:
    """The limits from server.yaml's values, and the warnings to log at start (memory lowered)."""
    if pids < 1:
        raise UsageError(f"server.yaml 'agent_pids_limit' must be at least 1 (it is {pids}); the default is "
                         f"{levelrun.PIDS_LIMIT}.")  # fmt: skip
    wanted = _size(memory, levelrun.size_bytes(levelrun.CONTEST_MEMORY), "agent_memory")
    host = host_bytes if host_bytes is not None else host_memory()
    warnings: list[str] = []
    if wanted > host:
        capped = f"{host // 2**20}m"
        warnings.append(
            f"agent_memory {memory} is more than this host's {host / 2**30:.1f} GiB, so each agent gets {capped} "
            "instead; an agent that needs more is stopped when it runs out of memory."
        )
        memory = capped
    limits = AgentLimits(
        memory=memory,
        pids=pids,
        out_bytes=_size(out_limit, levelrun.OUT_LIMIT, "agent_out_limit"),
        log_bytes=_size(log_limit, levelrun.LOG_LIMIT, "agent_log_limit"),
    )
    return limits, warnings
