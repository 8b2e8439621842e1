"""Fixtures shared by several test areas: the CLI, the Docker engine, and a contest server.

Area fixtures live in the area's own ``conftest.py`` (``server/``, ``client/``, ``eval/``, ...).

Docker: without an engine the docker tests skip with a loud reason. Where an engine is expected (CI
after ``.ci/install-docker.sh``), ``CONTESTKIT_REQUIRE_DOCKER=1`` makes a missing engine fail them
instead, so a broken Docker setup can never pass as "all green, some skipped". Toolkit images are
built once and reused across runs: :func:`contestkit.images.ensure_image` keys them by a content hash
of their Dockerfile and context, so only stale images rebuild.

Contest server: the real CLI (``python -m contestkit server run``) in a subprocess on a free port,
with a real SQLite file (or PostgreSQL, see ``server/conftest.py``). Its levels are run by the TEST
DOUBLE in ``server/fake_level_runner.py`` (the only thing faked; see there why).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from contestkit.dockerengine import connect, engine_available, engine_url

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
GAME, STATE = "Airstriker-Genesis", "Level1"
PASSWORD = "correct horse battery"
FAKE_EVALUATOR = "tests.server.fake_level_runner:fake_level_runner"
REQUIRE_ENV = "CONTESTKIT_REQUIRE_DOCKER"


# -- the command line ------------------------------------------------------------------------------


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout first on PYTHONPATH (a server subprocess imports
    the test double by dotted path) and a wide terminal (so no message is wrapped mid-sentence)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``contestkit ARGS`` as users do, in a fresh process; output is captured as text.

    ``env`` is the whole environment of the command (make it with ``base_env(**extra)``), so a test
    can also leave a variable out."""
    return subprocess.run(
        [sys.executable, "-m", "contestkit", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env() if env is None else env,
        input=input,
    )


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli(*args, env=, input=, cwd=, timeout=)``: the one way tests run the ``contestkit`` command."""
    return run_cli


@pytest.fixture(scope="session")
def base_env() -> Callable[..., dict[str, str]]:
    """``base_env(**extra)``: an environment for a contestkit subprocess (see ``subprocess_env``)."""
    return subprocess_env


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now."""
    return find_free_port


@pytest.fixture(scope="session")
def password() -> str:
    """The password every test team gets (long enough for the server's rule)."""
    return PASSWORD


# -- a real Docker engine --------------------------------------------------------------------------


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


def _run_container(api: Any, image: str, command: list[str] | str, **kwargs: Any) -> tuple[int, str]:
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


def _remove_images(api: Any, refs: list[str]) -> None:
    """Remove test images by tag (ignoring ones already gone)."""
    from docker.errors import APIError

    for ref in refs:
        try:
            api.remove_image(ref, force=True, noprune=False)
        except APIError:
            pass


@pytest.fixture(scope="session")
def run_container() -> Callable[..., tuple[int, str]]:
    """``run_container(api, image, command, **create_kwargs)`` -> (exit status, output); see ``_run_container``."""
    return _run_container


@pytest.fixture(scope="session")
def remove_images() -> Callable[[Any, list[str]], None]:
    """``remove_images(api, refs)``: remove test images by tag, ignoring ones already gone."""
    return _remove_images


@pytest.fixture
def docker_client() -> Iterator[Any]:
    """A high-level Docker client whose engine answers, or a loud skip (a failure under
    CONTESTKIT_REQUIRE_DOCKER=1, so CI cannot pass with these tests silently skipped)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        message = f"DOCKER TESTS NOT RUN: no Docker engine answers ({exc}); start dockerd to run them"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRE_ENV}=1 says an engine was expected)", pytrace=False)
        pytest.skip(message)
    yield client
    client.close()


# -- the contest server as a subprocess ----------------------------------------------------------


class ServerProcess:
    """``contestkit server run`` on a free port; ``kill()`` is SIGKILL (a crash), ``stop()`` SIGTERM."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or subprocess_env()
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "contestkit",
                "server",
                "run",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/rest/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None


@dataclass
class Contest:
    """A contest data directory with its server running, and a way to log teams in."""

    data_dir: Path
    server: ServerProcess
    levels: list[tuple[str, str]]
    password: str = PASSWORD  # every team's, unless a test says otherwise

    @property
    def url(self) -> str:
        return self.server.url

    def add_team(self, name: str, email: str, password: str = PASSWORD, *, via_cli: bool = False) -> None:
        """Add a team with ``contestkit server add-team`` or, quicker, the function behind it."""
        if via_cli:
            result = run_cli(
                "server",
                "add-team",
                name,
                "--email",
                email,
                "--password-stdin",
                "--data-dir",
                str(self.data_dir),
                input=password + "\n",
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return
        from contestkit.server.admin import add_team

        add_team(self.data_dir, name=name, email=email, password=password)

    def team(self, prefix: str = "team") -> tuple[str, requests.Session]:
        """A new team, logged in: (its registry namespace, an HTTP session with its cookie)."""
        name, email = unique_team(prefix)
        self.add_team(name, email)
        return name, self.session(email)

    def session(self, email: str, password: str = PASSWORD) -> requests.Session:
        http = requests.Session()
        response = http.post(self.url + "/rest/login", json={"email": email, "password": password}, timeout=30)
        assert response.status_code == 200, response.text
        return http

    def wait_job(
        self,
        http: requests.Session,
        job_id: int,
        statuses: tuple[str, ...] = ("finished", "failed", "cancelled"),
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        doc: dict[str, Any] = {}
        while time.monotonic() < deadline:
            doc = http.get(f"{self.url}/rest/job/status/{job_id}", timeout=10).json()
            if doc.get("status") in statuses:
                return doc
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not reach {statuses}: {doc}\n{self.server.log()}")


def write_levels(path: Path, levels: list[tuple[str, str]]) -> Path:
    path.write_text("game,state\n" + "".join(f"{g},{s}\n" for g, s in levels))
    return path


def init_contest(
    tmp: Path,
    levels: list[tuple[str, str]],
    *,
    registry: str = "127.0.0.1:5000",
    database_url: str | None = None,
    evaluator: str | None = FAKE_EVALUATOR,
    pull: bool = False,
    timestep_limit: int = 300,
    wallclock_limit: float = 60,
    extra_config: dict[str, Any] | None = None,
    server_url: str | None = None,
) -> Path:
    """``contestkit server init``; ``server_url`` is where the registry sends clients for tokens."""
    data_dir = tmp / "contest"
    args = [
        "server",
        "init",
        "--data-dir",
        str(data_dir),
        "--registry",
        registry,
        "--levels",
        str(write_levels(tmp / "levels.csv", levels)),
        "--timestep-limit",
        str(timestep_limit),
        "--wallclock-limit",
        str(wallclock_limit),
        "--pull" if pull else "--no-pull",
    ]
    if evaluator:
        args += ["--evaluator", evaluator]
    if database_url:
        args += ["--database-url", database_url]
    if server_url:
        args += ["--server-url", server_url]
    result = run_cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    if extra_config:
        import yaml

        path = data_dir / "server.yaml"
        config = yaml.safe_load(path.read_text())
        config.update(extra_config)
        path.write_text(yaml.safe_dump(config))
    return data_dir


class ContestFactory:
    """Makes contests under one directory and kills their servers when the fixture ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[ServerProcess] = []

    def __call__(self, levels: list[tuple[str, str]], *, env: dict[str, str] | None = None, **options: Any) -> Contest:
        tmp = self.root / f"contest-{len(self.servers)}"
        tmp.mkdir(parents=True)
        data_dir = init_contest(tmp, levels, **options)
        server = ServerProcess(data_dir, env=env).start()
        self.servers.append(server)
        return Contest(data_dir=data_dir, server=server, levels=levels)

    def close(self) -> None:
        for server in self.servers:
            server.kill()


@pytest.fixture
def make_contest(tmp_path: Path) -> Iterator[ContestFactory]:
    """Factory: ``make_contest(levels, **init_options)`` -> a running Contest of its own."""
    factory = ContestFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def make_module_contest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContestFactory]:
    """The same, for a contest shared by a module's tests (each test uses its own teams)."""
    factory = ContestFactory(tmp_path_factory.mktemp("contests"))
    yield factory
    factory.close()


_team_counter = iter(range(1, 1_000_000))


def unique_team(prefix: str = "team") -> tuple[str, str]:
    """A team name and email no other test of this process uses."""
    n = next(_team_counter)
    return f"{prefix}{n}", f"{prefix}{n}@example.org"


@pytest.fixture(scope="session")
def server_process() -> type[ServerProcess]:
    """The class ``ServerProcess(data_dir, env=None)``, for tests that start, kill and restart servers."""
    return ServerProcess


@pytest.fixture(scope="session")
def contest_of() -> type[Contest]:
    """The class ``Contest(data_dir, server, levels)``, for tests that assemble a contest themselves."""
    return Contest


@pytest.fixture(name="write_levels", scope="session")
def write_levels_fixture() -> Callable[[Path, list[tuple[str, str]]], Path]:
    """``write_levels(path, levels)``: a level-list CSV."""
    return write_levels


@pytest.fixture(name="init_contest", scope="session")
def init_contest_fixture() -> Callable[..., Path]:
    """``init_contest(tmp, levels, **options)``: a contest data directory made by ``contestkit server init``."""
    return init_contest


@pytest.fixture(name="unique_team", scope="session")
def unique_team_fixture() -> Callable[..., tuple[str, str]]:
    """``unique_team(prefix)``: a team name and email no other test of this process uses."""
    return unique_team


# -- a real registry (Debian's docker-registry) and tiny images to push ------------------------------


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
