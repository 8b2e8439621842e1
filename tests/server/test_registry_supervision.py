"""`contestkit server run` runs the team registry (issue 24): Debian's real ``docker-registry`` with
the configuration ``server init`` wrote, restarted with backoff when it dies, reported in
``/rest/health``, ``/metrics`` and ``/host``, and stopped when the server stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from contestkit.server.config import load_config
from contestkit.server.deployment.registry_supervision import RegistrySupervisor, RegistryWatch


def _until(condition, timeout: float = 30.0, what: str = "the condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not hold within {timeout} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its parent yet) is gone too.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


@pytest.fixture
def registry_contest(tmp_path: Path, init_contest, free_port) -> Path:  # type: ignore[no-untyped-def]
    if shutil.which("docker-registry") is None:
        pytest.skip("REGISTRY TESTS SKIPPED: Debian's docker-registry is not installed (apt-get install it)")
    return init_contest(tmp_path, [("Fake", "Level1")], registry=f"127.0.0.1:{free_port()}")


def test_a_registry_that_keeps_dying_is_restarted_with_growing_waits(registry_contest: Path) -> None:
    config = load_config(registry_contest)
    dying = RegistrySupervisor(
        config, command=[sys.executable, "-c", "import sys; sys.exit(3)"], backoff_first=0.05, backoff_max=0.4
    )
    watch = RegistryWatch(config, dying, cache_seconds=0)
    dying.start()
    try:
        _until(lambda: dying.restarts >= 3, what="three restarts")
        assert dying.last_exit == 3
        health = watch.health()
        assert health.ok is False and health.supervised is True and health.restarts >= 3
    finally:
        dying.stop()


def _server_run(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`contestkit server run` on ``port``, as a host starts it (the registry supervised)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "contestkit", "server", "run", "--data-dir", str(data_dir),
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def _registry_health(url: str) -> dict | None:
    """The registry part of the server's health when the registry answers, else None."""
    try:
        document = requests.get(url + "/rest/health", timeout=2).json()["registry"]
    except (requests.RequestException, ValueError):
        return None
    return document if document.get("ok") else None


def test_server_run_supervises_the_registry_it_configured(registry_contest: Path, free_port) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = _server_run(registry_contest, port)
    url = f"http://127.0.0.1:{port}"

    def registry() -> dict | None:
        return _registry_health(url)

    try:
        first = _until(registry, what="the supervised registry answering")
        assert first["supervised"] is True and first["restarts"] == 0
        os.kill(first["pid"], signal.SIGKILL)  # the registry crashes
        again = _until(lambda: (r := registry()) and r["restarts"] == 1 and r, what="the registry restarted")
        assert again["pid"] != first["pid"]
        assert "contestkit_registry_up 1.0" in requests.get(url + "/metrics", timeout=5).text
        assert requests.get(url + "/rest/health", timeout=5).json()["ok"] is True
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr.decode()
    assert not _alive(again["pid"]), "the registry outlived the server"
    assert "Traceback" not in stderr.decode()


def test_sigterm_to_server_run_stops_its_registry_too(registry_contest: Path, free_port) -> None:  # type: ignore[no-untyped-def]
    """Finding (a host's walkthrough): `kill -TERM` (systemd, `timeout`, process managers) ended the
    server but left its docker-registry running, orphaned, holding the registry's port."""
    port = free_port()
    server = _server_run(registry_contest, port)
    try:
        health = _until(lambda: _registry_health(f"http://127.0.0.1:{port}"), what="the supervised registry")
        pid = health["pid"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert _until(lambda: not _alive(pid), what="the registry stopping with the server"), stderr.decode()
    assert "Traceback" not in stderr.decode()


def test_server_run_leaves_a_registry_the_host_started_alone(registry_contest: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """The guides once said to start docker-registry by hand and then `server run`: that must still work."""
    import logging

    from contestkit.server.deployment.registry_supervision import supervisor_for

    config = load_config(registry_contest)
    assert isinstance(supervisor_for(config, logging.getLogger("test")), RegistrySupervisor)  # nothing answers
    by_hand = RegistrySupervisor(config)  # stands in for the host's own `docker-registry serve ...`
    by_hand.start()
    try:
        _until(lambda: RegistryWatch(config, cache_seconds=0).health().ok, what="the host's registry answering")
        with caplog.at_level("WARNING"):
            assert supervisor_for(config, logging.getLogger("test")) is None
        assert "already answers" in caplog.text
    finally:
        by_hand.stop()
