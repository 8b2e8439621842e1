"""Talking to the Docker engine.

Every part of contestkit that needs Docker (image builds, ``contestkit build``, the docker eval
runtime, ``doctor``) goes through :func:`connect`, so that "no engine" is reported the same way
everywhere: one sentence that says where we looked and how to start one, instead of the Docker
SDK's wall of ``requests`` / ``urllib3`` exceptions.

We use the SDK's low-level :class:`docker.APIClient` on purpose: it exposes the raw JSON progress
stream of builds and pulls, which the CLI renders itself, and it works with old engines (Debian's
``docker.io`` 20.10 uses the classic builder, no BuildKit).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from contestkit.errors import ContestkitError

if TYPE_CHECKING:
    from docker import APIClient

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Long operations (builds, imports) stream, so this bounds a single read, not a whole build.
DEFAULT_TIMEOUT = 600

START_HINT = (
    "start the engine (`sudo systemctl start docker`, or `sudo dockerd &`; CI uses "
    "`bash .ci/install-docker.sh`), or run `contestkit eval --runtime local` without Docker"
)


def engine_url() -> str:
    """Where the engine is expected: ``$DOCKER_HOST`` as the docker CLI reads it, else the socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def engine_available(timeout: float = 1.0) -> bool:
    """Fast yes/no: does a Docker engine answer right now? Used by ``--runtime auto``.

    For the usual unix socket this first checks the socket file exists (microseconds when no
    engine is installed) and then asks ``/_ping`` with a short timeout, so a dead socket left by
    a crashed daemon answers ``False`` instead of hanging. Never raises.
    """
    url = engine_url()
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        path = parsed.path or "/var/run/docker.sock"
        if not os.path.exists(path):
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16]
    try:
        api = connect(timeout=timeout)
    except ContestkitError:
        return False
    api.close()
    return True


def connect(timeout: float = DEFAULT_TIMEOUT) -> APIClient:
    """An API client for the engine, or a :class:`ContestkitError` saying how to start one.

    Honours ``DOCKER_HOST`` / ``DOCKER_TLS_VERIFY`` / ``DOCKER_CERT_PATH`` like the docker CLI.
    The import of the SDK is deferred so commands that never touch Docker stay fast.
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a hard dependency
        raise ContestkitError("The Docker SDK for Python is missing: `pip install 'docker>=7'`.") from exc
    try:
        kwargs = docker.utils.kwargs_from_env()
        kwargs.setdefault("base_url", DEFAULT_SOCKET)
        api = docker.APIClient(version="auto", timeout=int(timeout), **kwargs)
        api.ping()
    except (DockerException, OSError) as exc:
        raise ContestkitError(f"No Docker engine answered at {engine_url()}: {START_HINT}.") from exc
    except Exception as exc:  # requests' ConnectionError and friends are not DockerExceptions
        if exc.__class__.__module__.startswith(("requests", "urllib3")):
            raise ContestkitError(f"No Docker engine answered at {engine_url()}: {START_HINT}.") from exc
        if isinstance(exc, ValueError | KeyError):  # the SDK parses ~/.docker/config.json eagerly
            config_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
            raise ContestkitError(
                f"The docker CLI config {os.path.join(config_dir, 'config.json')} could not be read "
                f"({exc}): fix its auths entries or log in again with `docker login`."
            ) from exc
        raise
    return api


def client(timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The SDK's high-level ``DockerClient`` over :func:`connect`'s connection.

    For code that wants ``client.images`` and ``client.login``: it gets the same engine, the
    same environment variables and the same one-sentence errors as everything else.
    """
    import docker

    high = docker.DockerClient.__new__(docker.DockerClient)
    high.api = connect(timeout=timeout)
    return high


@dataclass(frozen=True)
class EngineInfo:
    """What ``doctor`` and the runtimes want to know about the engine."""

    version: str
    api_version: str
    os: str
    runtimes: tuple[str, ...]
    default_runtime: str
    cpus: int
    memory_bytes: int
    root_dir: str

    @property
    def has_nvidia(self) -> bool:
        """Whether ``--gpus`` can work: the NVIDIA container runtime is registered."""
        return "nvidia" in self.runtimes


def engine_info(api: APIClient | None = None) -> EngineInfo:
    """Version, runtimes and capacity of the engine (connecting when no client is given)."""
    own = api is None
    api = api or connect(timeout=10)
    try:
        info = api.info()
        version = api.version()
    finally:
        if own:
            api.close()
    return EngineInfo(
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        os=str(info.get("OperatingSystem", "?")),
        runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
        default_runtime=str(info.get("DefaultRuntime", "runc")),
        cpus=int(info.get("NCPU", 0) or 0),
        memory_bytes=int(info.get("MemTotal", 0) or 0),
        root_dir=str(info.get("DockerRootDir", "")),
    )
