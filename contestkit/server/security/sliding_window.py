"""The login throttle's rule: ``limit`` failures per ``window`` seconds, decided on a key's timestamps.

One home for the decision (what has expired, whether one more attempt is allowed, how long to wait,
which keys a full table forgets first), whatever keeps the timestamps: ``auth.LoginThrottle`` keeps
them in a dict (one process), ``throttle_store.DatabaseStore`` in the server's database (every
process and host of one server). Both call these functions, so the two cannot decide differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A table over its bound is cut down to this many tenths of it, so that a flood of made-up keys does
# not rank the whole table again on every failed login.
KEEP_TENTHS = 9


@dataclass(frozen=True)
class SlidingWindow:
    """``limit`` failed checks per key in any ``window`` seconds; at most ``max_entries`` keys kept."""

    limit: int
    window: float
    max_entries: int

    def expired(self, stamp: float, at: float) -> bool:
        """Whether a failure at ``stamp`` no longer counts at ``at``."""
        return stamp <= at - self.window

    def live(self, stamps: Sequence[float], at: float) -> list[float]:
        """The failures that still count at ``at``, oldest first."""
        return sorted(stamp for stamp in stamps if not self.expired(stamp, at))

    def wait(self, live: Sequence[float], at: float) -> float:
        """Seconds until one more check is allowed for a key with these ``live`` failures (oldest
        first); 0 when it is allowed now, and never 0 when it is not."""
        if len(live) < self.limit:
            return 0.0
        return max(live[0] + self.window - at, 1e-9)

    def rank(self, failures: int, newest: float) -> tuple[int, float]:
        """Sort key of the keys a full table forgets first: the fewest failures, then the oldest
        newest failure. A key being guessed at (many failures) keeps its count through a flood."""
        return (failures, newest)

    @property
    def keep(self) -> int:
        """How many keys a table over ``max_entries`` keeps."""
        return self.max_entries * KEEP_TENTHS // 10
