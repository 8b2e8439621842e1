"""The executor for a plain function: ``evaluator: MODULE:FUNCTION`` in server.yaml.

Why: a host can evaluate levels with their own code without writing an executor class, and the
tests plug in an in-process fake game this way (``tests/server/fake_level_runner.py``). The function is

    function(task: LevelTask, on_progress: ProgressCallback, cancel: threading.Event) -> result

and is called in the scheduler's thread for the level; ``cancel`` is set when the run is cancelled.
The Docker executor is this same shape around ``contestkit.runs.evaluation.evaluate_level``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from contestkit.errors import ContestkitError
from contestkit.server.executors import Executor, LevelRun, LevelTask, ProgressCallback
from contestkit.server.executors.pull import RegistryAccount, pull_image

LevelFunction = Callable[[LevelTask, ProgressCallback, threading.Event], Any]


class FunctionRun(LevelRun):
    """A level-run that is one blocking call of the function, made when the scheduler follows it."""

    def __init__(self, function: LevelFunction, task: LevelTask) -> None:
        super().__init__(task)
        self._function = function

    def follow(self, on_progress: ProgressCallback) -> Any:
        return self._function(self.task, on_progress, self._cancelled)


class FunctionExecutor(Executor):
    """Runs each level by calling ``function``; pulls the job's image first when given an account."""

    name = "function"

    def __init__(self, function: LevelFunction, *, pull_with: RegistryAccount | None = None) -> None:
        self.function = function
        self.pull_with = pull_with

    def resolve_image(self, reference: str) -> str:
        if self.pull_with is None:
            return reference
        return pull_image(reference, self.pull_with)

    def start(self, task: LevelTask) -> LevelRun:
        return FunctionRun(self.function, task)


def load_level_function(spec: str) -> LevelFunction:
    """``MODULE:FUNCTION`` from server.yaml's ``evaluator`` key."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ContestkitError(
            f"The evaluator '{spec}' in server.yaml cannot be loaded ({exc}); fix the 'evaluator' key "
            "or remove it to use contestkit's own."
        ) from None
    if not callable(function):
        raise ContestkitError(f"The evaluator '{spec}' in server.yaml is not a function.")
    return function  # type: ignore[no-any-return]
