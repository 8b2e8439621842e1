"""A real registry: Debian's ``docker-registry`` (the CNCF distribution registry) with the
configuration that ``contestkit server init`` wrote."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests


class RegistryProcess:
    """Debian's ``docker-registry`` with the configuration that ``contestkit server init`` wrote."""

    def __init__(self, config_path: Path, address: str) -> None:
        self.config_path = config_path
        self.address = address
        self.log_path = config_path.parent / "registry.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> RegistryProcess:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.skip(
                "REGISTRY TESTS SKIPPED: Debian's docker-registry is not installed (apt-get install docker-registry)"
            )
        self.proc = subprocess.Popen(
            [binary, "serve", str(self.config_path)], stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log_path.read_text()}")
            try:
                if requests.get(f"http://{self.address}/v2/", timeout=1).status_code == 401:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("docker-registry did not answer")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
