"""Reading a results directory's .bk2 recordings in tests."""

from __future__ import annotations

import zipfile
from pathlib import Path


def input_logs(results_dir: Path) -> list[str]:
    """Each recorded episode's button presses, frame by frame (the bk2's ``Input Log.txt``), in order."""
    logs = []
    for movie in sorted((results_dir / "bk2").glob("*.bk2")):
        with zipfile.ZipFile(movie) as z:
            logs.append(z.read("Input Log.txt").decode())
    return logs
