"""A real Docker engine for the tests: a loud skip (or failure, where CI expects an engine) without one,
throwaway containers and tiny images that need no base image or registry."""

from __future__ import annotations

import os
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from contestkit.containers.dockerengine import engine_available, engine_url
from tests.support.paths import REQUIRE_DOCKER_ENV


def skip_without_engine(reason: str) -> None:
    """Skip with ``reason``, or fail under ``CONTESTKIT_REQUIRE_DOCKER=1``: CI cannot pass with the
    Docker tests silently skipped."""
    message = f"DOCKER TESTS NOT RUN: {reason}"
    if os.environ.get(REQUIRE_DOCKER_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_DOCKER_ENV}=1 says an engine was expected)", pytrace=False)
    pytest.skip(message)


def require_engine() -> None:
    """Return when a Docker engine answers; otherwise skip (or fail, see ``skip_without_engine``)."""
    if not engine_available(timeout=3.0):
        skip_without_engine(
            f"no Docker engine answers at {engine_url()}. "
            "Start one with `bash .ci/install-docker.sh` (installs docker.io and starts dockerd)."
        )


def run_container(api: Any, image: str, command: list[str] | str, **kwargs: Any) -> tuple[int, str]:
    """Run ``command`` in a throwaway container of ``image``; return (exit status, output).

    The container is always removed, even when waiting fails, so tests leave nothing behind.
    """
    name = f"contestkit-test-{uuid.uuid4().hex[:10]}"
    container = api.create_container(image, command=command, name=name, **kwargs)
    try:
        api.start(container)
        status = api.wait(container, timeout=120)["StatusCode"]
        output = api.logs(container, stdout=True, stderr=True).decode("utf-8", "replace")
    finally:
        api.remove_container(container, force=True)
    return status, output


def remove_images(api: Any, refs: list[str]) -> None:
    """Remove test images by tag (ignoring ones already gone)."""
    from docker.errors import APIError

    for ref in refs:
        try:
            api.remove_image(ref, force=True, noprune=False)
        except APIError:
            pass


def tiny_image(client: Any, tmp: Path, name: str) -> str:
    """A one-file image made without any base image or network (``docker import`` of a tarball)."""
    rootfs = tmp / f"rootfs-{name.replace(':', '-').replace('/', '-')}"
    rootfs.mkdir(parents=True, exist_ok=True)
    (rootfs / "agent.txt").write_text(f"agent {name} {time.time()}\n")
    tar_path = rootfs.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(rootfs / "agent.txt", arcname="agent.txt")
    repository, tag = name.rsplit(":", 1)
    client.api.import_image(src=str(tar_path), repository=repository, tag=tag)
    return name
