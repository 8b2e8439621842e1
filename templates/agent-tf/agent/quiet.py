"""TensorFlow, imported without its start-up noise in agent-stderr.txt.

Why: TensorFlow's native libraries log as they load ("All log messages before
absl::InitializeLog() ...", "oneDNN custom operations are on ..."), before any setting of theirs
is read, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop those lines, and every evaluation's
agent-stderr.txt began with them, burying a real error. The import runs with the process's
stderr (file descriptor 2) pointed at /dev/null; a failing import still raises its ImportError,
with its message, once stderr is back. Import this module before ``tensorflow`` or ``keras``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own INFO and WARNING lines later on


def _import_quietly() -> None:
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_quietly()
