"""The systemd units shipped under deploy/systemd/ are valid: ``systemd-analyze verify`` accepts them.

``verify`` checks that ExecStart's program exists, so the test installs copies whose ``contestkit``
is this environment's console script (a host's is /usr/local/bin/contestkit); nothing else changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


def test_the_shipped_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is not installed (CI installs it: .ci/run)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    contestkit = Path(sys.executable).with_name("contestkit")
    if not contestkit.exists():
        pytest.skip(f"no contestkit console script next to {sys.executable}")
    units = sorted(UNITS.glob("*.service"))
    assert [unit.name for unit in units] == ["contestkit-registry.service", "contestkit.service"]
    copies = []
    for unit in units:
        text = unit.read_text().replace("/usr/local/bin/contestkit", str(contestkit))
        if "docker-registry" in text and shutil.which("docker-registry") is None:
            pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
        (tmp_path / unit.name).write_text(text)
        copies.append(str(tmp_path / unit.name))
    checked = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True, timeout=120)
    problems = [line for line in checked.stderr.splitlines() if str(tmp_path) in line or "contestkit" in line]
    assert checked.returncode == 0 and not problems, checked.stderr
    # The server's unit runs `server run` (which supervises the registry); the registry's runs its config.
    assert "server run --data-dir" in (UNITS / "contestkit.service").read_text()
    assert "registry/config.yml" in (UNITS / "contestkit-registry.service").read_text()
