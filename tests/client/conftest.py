"""Fixtures of the client tests: a real registry (Debian's ``docker-registry``) and tiny images to push.

The contest server, CLI and Docker fixtures they share with other areas are in ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

# -- a real registry -----------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def registry_process() -> type[RegistryProcess]:
    """The class ``RegistryProcess(config_path, address)``; ``.start()`` skips loudly without docker-registry."""
    return RegistryProcess


def _tiny_image(client: Any, tmp: Path, name: str) -> str:
    """A one-file image made without any base image or network (``docker import`` of a tarball)."""
    import tarfile

    rootfs = tmp / f"rootfs-{name.replace(':', '-').replace('/', '-')}"
    rootfs.mkdir(parents=True, exist_ok=True)
    (rootfs / "agent.txt").write_text(f"agent {name} {time.time()}\n")
    tar_path = rootfs.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs / "agent.txt", arcname="agent.txt")
    repository, tag = name.rsplit(":", 1)
    client.api.import_image(src=str(tar_path), repository=repository, tag=tag)
    return name


@pytest.fixture(scope="session")
def tiny_image() -> Callable[[Any, Path, str], str]:
    """``tiny_image(client, tmp, name)``: a one-file image made without any base image or network."""
    return _tiny_image
