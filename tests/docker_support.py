"""Real Docker for the image, build and doctor tests (no mocks).

Import the fixtures into a test module (``from docker_support import docker_api, toolkit_images``)
and mark its tests ``@pytest.mark.docker``.

Without an engine the tests skip with a loud reason. Where an engine is expected (CI after
``.ci/install-docker.sh``), set ``CONTESTKIT_REQUIRE_DOCKER=1`` and a missing engine fails the
tests instead, so a broken Docker setup can never pass as "all green, some skipped".

Toolkit images are built once and then reused across test runs: :func:`contestkit.images.ensure_image`
keys them by a content hash of their Dockerfile and context, so only stale images rebuild.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from contestkit.dockerengine import connect, engine_available, engine_url

REQUIRE_ENV = "CONTESTKIT_REQUIRE_DOCKER"


def require_engine() -> None:
    """Skip (or fail, under ``CONTESTKIT_REQUIRE_DOCKER=1``) when no Docker engine answers."""
    if engine_available(timeout=3.0):
        return
    message = (
        f"DOCKER TESTS NOT RUN: no Docker engine answers at {engine_url()}. "
        "Start one with `bash .ci/install-docker.sh` (installs docker.io and starts dockerd)."
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 says an engine was expected)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    """A low-level Docker API client for the whole session."""
    require_engine()
    api = connect()
    yield api
    api.close()


@pytest.fixture(scope="session")
def toolkit_images(docker_api: Any) -> dict[str, str]:
    """``{"remote-env": ref, "cpu": ref}``, built on first use and reused afterwards.

    On a machine that reaches no image registry and has no Python base yet (a fresh CI machine),
    the base is bootstrapped from Debian packages first, as a user would with
    ``contestkit images bootstrap`` (about two minutes, once).
    """
    from contestkit.bootstrap import bootstrap_base_image
    from contestkit.config import load_config
    from contestkit.images import ensure_image, resolve_python_image_quiet

    config = load_config()
    if resolve_python_image_quiet(docker_api, config) is None and not config.is_set("python_image"):
        try:
            from contestkit.images import resolve_python_image

            resolve_python_image(docker_api, config)  # a pull, where a registry answers
        except Exception:  # noqa: BLE001 - no registry: make the local stand-in instead
            bootstrap_base_image(api=docker_api, config=config)
    return {name: ensure_image(name, api=docker_api, config=config) for name in ("remote-env", "cpu")}


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
