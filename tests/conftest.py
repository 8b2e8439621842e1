"""Fixtures shared by several test areas (the CLI, Docker, a contest server, a registry); only fixtures:
what they hand out lives in ``tests/support/``. Docker tests skip loudly without an engine, and fail
under ``CONTESTKIT_REQUIRE_DOCKER=1`` (CI), so a broken engine never passes as "some skipped"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import commands, contest, docker, registry
from tests.support.paths import PASSWORD


@pytest.fixture(scope="session")
def cli() -> Callable[..., Any]:
    """``cli(*args, env=, input=, cwd=, timeout=)``: the one way tests run the ``contestkit`` command."""
    return commands.run_cli


@pytest.fixture(scope="session")
def base_env() -> Callable[..., dict[str, str]]:
    """``base_env(**extra)``: an environment for a contestkit subprocess (see ``subprocess_env``)."""
    return commands.subprocess_env


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now."""
    return commands.find_free_port


@pytest.fixture(scope="session")
def password() -> str:
    """The password every test team gets (long enough for the server's rule)."""
    return PASSWORD


@pytest.fixture(scope="session")
def docker_api() -> Iterator[Any]:
    """A low-level Docker API client for the whole session."""
    from contestkit.containers.dockerengine import connect

    docker.require_engine()
    api = connect()
    yield api
    api.close()


@pytest.fixture(scope="session")
def toolkit_images(docker_api: Any) -> dict[str, str]:
    """``{"remote-env": ref, "cpu": ref}``, built when stale (the base bootstrapped first if missing)."""
    from contestkit.containers.bootstrap import bootstrap_base_image
    from contestkit.containers.images import ensure_image, resolve_python_image, resolve_python_image_quiet
    from contestkit.projects.config import load_config

    config = load_config()
    if resolve_python_image_quiet(docker_api, config) is None and not config.is_set("python_image"):
        try:
            resolve_python_image(docker_api, config)  # a pull, where a registry answers
        except Exception:  # noqa: BLE001 - no registry: make the local stand-in instead
            bootstrap_base_image(api=docker_api, config=config)
    return {name: ensure_image(name, api=docker_api, config=config) for name in ("remote-env", "cpu")}


@pytest.fixture(scope="session")
def run_container() -> Callable[..., tuple[int, str]]:
    """``run_container(api, image, command, **create_kwargs)`` -> (exit status, output)."""
    return docker.run_container


@pytest.fixture(scope="session")
def remove_images() -> Callable[[Any, list[str]], None]:
    """``remove_images(api, refs)``: remove test images by tag, ignoring ones already gone."""
    return docker.remove_images


@pytest.fixture
def docker_client() -> Iterator[Any]:
    """A high-level Docker client whose engine answers, or a loud skip (see ``skip_without_engine``)."""
    try:
        import docker as docker_sdk

        client = docker_sdk.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        docker.skip_without_engine(f"no Docker engine answers ({exc}); start dockerd to run them")
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_image() -> Callable[[Any, Path, str], str]:
    """``tiny_image(client, tmp, name)``: a one-file image made without any base image or network."""
    return docker.tiny_image


@pytest.fixture
def make_contest(tmp_path: Path) -> Iterator[contest.ContestFactory]:
    """Factory: ``make_contest(levels, **init_options)`` -> a running Contest of its own."""
    factory = contest.ContestFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def make_module_contest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[contest.ContestFactory]:
    """The same, for a contest shared by a module's tests (each test uses its own teams)."""
    factory = contest.ContestFactory(tmp_path_factory.mktemp("contests"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def server_process() -> type[contest.ServerProcess]:
    """The class ``ServerProcess(data_dir, env=None)``, for tests that start, kill and restart servers."""
    return contest.ServerProcess


@pytest.fixture(scope="session")
def contest_of() -> type[contest.Contest]:
    """The class ``Contest(data_dir, server, levels)``, for tests that assemble a contest themselves."""
    return contest.Contest


@pytest.fixture(scope="session")
def write_levels() -> Callable[[Path, list[tuple[str, str]]], Path]:
    """``write_levels(path, levels)``: a level-list CSV."""
    return contest.write_levels


@pytest.fixture(scope="session")
def init_contest() -> Callable[..., Path]:
    """``init_contest(tmp, levels, **options)``: a contest data directory made by ``contestkit server init``."""
    return contest.init_contest


@pytest.fixture(scope="session")
def unique_team() -> Callable[..., tuple[str, str]]:
    """``unique_team(prefix)``: a team name and email no other test of this process uses."""
    return contest.unique_team


@pytest.fixture(scope="session")
def registry_process() -> type[registry.RegistryProcess]:
    """The class ``RegistryProcess(config_path, address)``; ``.start()`` skips loudly without docker-registry."""
    return registry.RegistryProcess
