"""Waiting for a condition instead of sleeping for a guess: a loaded CI machine is slow, never late."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05,
               message: str | Callable[[], str] = "the condition") -> T:  # fmt: skip
    """Call ``condition`` until it returns something truthy and return that; fail after ``timeout`` s.

    ``message`` (or a function making it, for the state at the time of failure) names what was
    awaited, so a timeout says what never happened rather than just "timed out"."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout} s waiting for {text}")
        time.sleep(interval)
