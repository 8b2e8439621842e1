"""Pulling a job's image retries while the registry is down (issue 11): a real Docker engine and Debian's
docker-registry, stopped and started again on the same port."""

from __future__ import annotations

import threading
import time

import pytest

from contestkit.errors import ContestkitError
from tests.support.polling import wait_until

pytestmark = pytest.mark.docker


def _plain_registry(tmp_path, port: int):
    config = tmp_path / "registry" / "config.yml"
    config.parent.mkdir()
    config.write_text(
        "version: 0.1\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry' / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    return config


def test_a_pull_waits_for_a_registry_that_comes_back(
    tmp_path, docker_client, registry_process, free_port, tiny_image, monkeypatch
):
    from contestkit.server.executors.pull import RegistryAccount, pull_image

    port = free_port()
    address = f"127.0.0.1:{port}"
    registry = registry_process(_plain_registry(tmp_path, port), address)
    # A registry without auth answers /v2/ with 200, the fixture waits for 401: wait ourselves.
    monkeypatch.setattr(registry, "start", lambda timeout=20.0: _start_plain(registry))
    registry.start()
    image = f"{address}/team/agent:retry-{int(time.time())}"
    tiny_image(docker_client, tmp_path, image)
    try:
        docker_client.images.push(image)
        docker_client.images.remove(image, force=True)
        registry.stop()
        with pytest.raises(ContestkitError, match=r"Pulling .* failed: .*(refused|connect)"):
            pull_image(image, RegistryAccount("x", "y", retry_seconds=1.0))

        result: dict[str, object] = {}
        waits: list[float] = []

        def counted_backoff(seconds: float) -> None:
            waits.append(seconds)
            time.sleep(seconds)  # the library's own backoff, as it would sleep it

        account = RegistryAccount("x", "y", retry_seconds=60.0)
        puller = threading.Thread(target=lambda: result.update(ref=pull_image(image, account, sleep=counted_backoff)))
        puller.start()
        wait_until(lambda: len(waits) >= 3, timeout=60, message=lambda: f"three failed tries (backoffs: {waits})")
        assert puller.is_alive()  # still retrying, not failed
        registry.start()
        puller.join(90)
        assert str(result.get("ref", "")).startswith(f"{address}/team/agent@sha256:"), result
    finally:
        registry.stop()
        try:
            docker_client.images.remove(image, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _start_plain(registry):
    import shutil
    import subprocess

    import requests

    registry.proc = subprocess.Popen(
        [shutil.which("docker-registry") or "docker-registry", "serve", str(registry.config_path)],
        stdout=registry.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://{registry.address}/v2/", timeout=1).status_code == 200:
                return registry
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(registry.log_path.read_text())
