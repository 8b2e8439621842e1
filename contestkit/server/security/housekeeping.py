"""Housekeeping: expired sessions and API tokens are deleted, not just refused.

Why: a login that is never followed by a logout leaves its session row behind (the probe found 2,090
after a day of load), and an expired row is only deleted when someone presents it. A thread of the
server deletes every expired row every ``sweep_seconds`` (server.yaml, default 600), so the table
holds only what can still be used. The same sweep deletes the login throttle's keys whose failures
all left their window (``throttle_store``), so that table too holds only what still counts, even
when no login comes to trigger the throttle's own sweep.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete

from contestkit.server.security import throttle_store
from contestkit.server.storage.db import AuthToken, Database, now

log = logging.getLogger("contestkit.server.security.housekeeping")


def sweep_expired(database: Database, at: float | None = None) -> int:
    """Delete the sessions and API tokens expired at ``at`` (now), and the login throttle's expired
    keys; returns how many sessions and tokens."""
    at = at or now()
    with database.session() as db:
        result = db.execute(delete(AuthToken).where(AuthToken.expires_at.is_not(None), AuthToken.expires_at <= at))
        throttle_store.sweep_expired(db, at)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


class Sweeper:
    """Runs ``sweep_expired`` every ``interval`` seconds on a daemon thread until ``stop``."""

    def __init__(self, database: Database, interval: float) -> None:
        self.database = database
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contestkit-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                swept = sweep_expired(self.database)
                if swept:
                    log.info("swept %d expired sessions and tokens", swept)
            except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next interval
                log.warning("sweeping expired sessions failed (retried in %.0f s): %s", self.interval, exc)
