"""A clock a test moves by hand, for the library's injectable clocks (``phases.Clock``, the bridge's
budgets, session expiry): a test advances time instead of sleeping through it."""

from __future__ import annotations

import threading


class ManualClock:
    """Returns the same time until ``advance`` moves it (from any thread)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
