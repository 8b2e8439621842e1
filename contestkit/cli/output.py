"""Shared console objects and printing helpers for the CLI modules."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """Print one JSON document on stdout (the contract of every ``--json`` flag)."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


# Characters that change what a terminal shows rather than being shown: C0 controls but tab and
# newline (ESC starts clear-screen, title and OSC 52 clipboard sequences), DEL, C1 controls, and the
# bidirectional and zero-width format characters that reorder or hide text (U+202E and friends).
_INVISIBLE = {
    *(chr(c) for c in range(0x20) if chr(c) not in "\t\n"),
    "\x7f",
    *(chr(c) for c in range(0x80, 0xA0)),
    "\u061c", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2028", "\u2029",
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\ufeff",
}  # fmt: skip
_VISIBLE = str.maketrans({c: (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in _INVISIBLE})


def visible(text: str) -> str:
    """``text`` with every control, escape and bidi character written out (``\\x1b``, ``\\u202e``).

    Why: agents' output and team names are written by teams; printed raw, an agent's stderr could
    clear the host's screen or write to their clipboard, and a team name could display reversed."""
    return text.translate(_VISIBLE)


def shown(value: object) -> str:
    """Text from the server, agents or teams for ``console.print``: visible and never markup."""
    return escape(visible(str(value)))
