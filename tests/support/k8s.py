"""Helpers for the Kubernetes runtime's tests (plain code, no fixtures: those are in tests/server/k8s/conftest.py)."""

from __future__ import annotations

import threading
import time
from typing import Any


class Follow:
    """``run.follow`` in a thread, as the scheduler calls it, recording progress."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.progress: list[Any] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, daemon=True)
        self.thread.start()

    def _target(self) -> None:
        try:
            self.result = self.run.follow(self.progress.append)
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            self.error = exc

    def wait_progress(self, timesteps: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(getattr(p, "timesteps", 0) >= timesteps for p in self.progress):
            assert time.monotonic() < deadline, f"no progress to {timesteps} timesteps: {self.progress[-1:]}"
            time.sleep(0.05)

    def join(self, timeout: float = 20.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "follow did not return"
        if self.error is not None:
            raise self.error
        return self.result
