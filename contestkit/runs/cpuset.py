"""CPU sets for an evaluation: the CPUs the env and the agent of a level may run on.

Why this exists: the bridge's cost per timestep is mostly the time it takes to wake the other
process. When the two run on different CPUs that wake-up is an inter-processor interrupt, and on
a virtual machine waking an idle virtual CPU costs tens of microseconds (``bench/bridge.py``
measures it as the floor of any bridge that blocks instead of spinning). On one CPU it is a
plain context switch, a few microseconds. So a single-threaded agent on a VM runs fastest with
``--cpuset`` naming one CPU; a multi-threaded agent wants several. Hosts also use a set to keep
an evaluation away from the CPUs other work runs on.

The text format is Linux's cpuset list (``0-3``, ``1,3``, ``0-1,6``), the one ``taskset -c``
and ``docker run --cpuset-cpus`` take.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from contestkit.errors import UsageError

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def available() -> set[int]:
    """The CPUs this process may use (what a local evaluation can be given)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every CPU the machine reports
        return set(range(os.cpu_count() or 1))


def describe(cpus: Iterable[int]) -> str:
    """The shortest cpuset list for ``cpus`` (``[0, 1, 2, 5]`` -> ``0-2,5``)."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse(text: str, allowed: Iterable[int] | None = None, *, what: str = "--cpuset") -> tuple[int, ...]:
    """The CPUs a cpuset list names, checked against ``allowed`` (default: :func:`available`).

    ``what`` names the setting in error messages (the CLI flag, or a server.yaml key).
    """
    allowed_set = set(available() if allowed is None else allowed)
    here = f"this machine's are {describe(allowed_set)}"
    cpus: set[int] = set()
    for item in str(text).replace(" ", "").split(","):
        match = _ITEM.match(item)
        if not match:
            raise UsageError(f"{what} {text!r} is not a CPU list: write it like 0-3 or 1,3 ({here}).")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UsageError(f"{what} {text!r}: the range {item} runs backwards; write {last}-{first}.")
        cpus.update(range(first, last + 1))
    missing = sorted(cpus - allowed_set)
    if missing:
        raise UsageError(f"{what} {text!r}: CPU {describe(missing)} is not available here ({here}).")
    return tuple(sorted(cpus))


@dataclass(frozen=True)
class CpuSet:
    """A CPU set, parsed and checked once: the value a level-run carries from the command line or
    server.yaml down to ``docker run --cpuset-cpus`` and ``sched_setaffinity``, so no step along the way
    reads the text again. ``str()`` gives the shortest list (``0-2,5``)."""

    cpus: tuple[int, ...]

    @classmethod
    def parse(cls, text: str, allowed: Iterable[int] | None = None, *, what: str = "--cpuset") -> CpuSet:
        """The set ``text`` names, checked against ``allowed`` (default: :func:`available`); see :func:`parse`."""
        return cls(parse(text, allowed, what=what))

    def __iter__(self) -> Iterator[int]:
        return iter(self.cpus)

    def __len__(self) -> int:
        return len(self.cpus)

    def __str__(self) -> str:
        return describe(self.cpus)
