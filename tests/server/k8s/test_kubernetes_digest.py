"""The Kubernetes executor pins a submitted tag to its digest by asking the registry (no pull).

Against Debian's real ``docker-registry`` (the one the contest server ships a configuration for),
with an image pushed through the registry's own HTTP API.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from contestkit.errors import ContestkitError
from contestkit.server.executors import kubernetes as kx


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("REGISTRY TESTS SKIPPED: Debian's docker-registry is not installed (apt-get install it)")
    address = f"127.0.0.1:{_free_port()}"
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: {address}\n"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "docker-registry did not answer"
            time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def _push(address: str, repository: str, tag: str) -> str:
    """Push a one-layer image through the registry API; returns its manifest digest."""

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"http://{address}/v2/{repository}/blobs/uploads/", timeout=10)
        location = start.headers["Location"]
        location = location if location.startswith("http") else f"http://{address}{location}"
        joiner = "&" if "?" in location else "?"
        done = requests.put(f"{location}{joiner}digest={digest}", data=data, timeout=10)
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("agent.py")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"pass\n"))
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()]}, "config": {}}).encode()  # fmt: skip
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **blob(config)},
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    **blob(gzip.compress(layer.getvalue())),
                }
            ],  # fmt: skip
        }
    ).encode()
    put = requests.put(
        f"http://{address}/v2/{repository}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_a_tag_is_pinned_to_the_digest_the_registry_holds(registry: str, executor: kx.KubernetesExecutor) -> None:
    digest = _push(registry, "team-rocket/agent", "v1")
    executor.registry = ("http", None)
    assert executor.resolve_image(f"{registry}/team-rocket/agent:v1") == f"{registry}/team-rocket/agent@{digest}"
    pinned = f"{registry}/team-rocket/agent@{digest}"
    assert executor.resolve_image(pinned) == pinned, "an already pinned image is kept"
    with pytest.raises(ContestkitError, match="is not in the registry"):
        executor.resolve_image(f"{registry}/team-rocket/agent:v2")
