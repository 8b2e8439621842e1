"""Every template works the moment it is created: it evaluates, and its own tests pass.

This is the contestant's first ten minutes, run for real: ``contestkit new x --template T``,
``cd x``, ``contestkit eval Airstriker-Genesis Level1 --runtime local --timestep-limit 6000``, then
the project's own ``pytest``. Slow (minutes), so marked ``templates``. The frameworks must be
installed on the host (CPU builds: ``torch==2.13.0``, ``tensorflow-cpu==2.21.0``); without one
the test is skipped with the install line, except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORK = {
    "pytorch": ("torch", "pip install torch==2.13.0"),
    "tf": ("tensorflow", "pip install tensorflow-cpu==2.21.0"),
    "random": (None, ""),
}

pytestmark = [pytest.mark.templates, pytest.mark.slow]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The checkout on the path, as an installed contestkit would be (CI may run from a clone).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _need_framework(template: str) -> None:
    module, install = FRAMEWORK[template]
    if module and importlib.util.find_spec(module) is None:
        message = f"the {template} template needs {module}: {install}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _run(cmd: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.mark.parametrize("template", ["random", "pytorch", "tf"])
def test_a_new_project_evaluates_and_passes_its_own_tests(template: str, tmp_path: Path) -> None:
    _need_framework(template)
    ck = [sys.executable, "-m", "contestkit"]
    _run([*ck, "new", "x", "--template", template], cwd=tmp_path, timeout=120)
    project = tmp_path / "x"

    _run([*ck, "eval", "Airstriker-Genesis", "Level1", "--runtime", "local", "--timestep-limit", "6000"],
         cwd=project, timeout=600)  # fmt: skip
    monitors = list((project / "results").rglob("monitor.csv"))
    assert len(monitors) == 1, monitors
    with monitors[0].open() as fh:
        episodes = list(csv.DictReader(fh))
    assert len(episodes) >= 3, episodes  # Airstriker episodes last ~400 timesteps
    assert sum(int(float(e["l"])) for e in episodes) <= 6000
    if template != "random":
        out = monitors[0].parent / "out" / "checkpoints"
        assert any(out.glob("latest.*")), f"no checkpoint in {out}"

    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, timeout=600)
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]
