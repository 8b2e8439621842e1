"""The team registry from the client's side: login, tag, push with per-layer progress, list.

All Docker work goes through the Docker SDK (the engine does the registry protocol, token auth
included); the listing of the team's repositories comes from the contest server, since teams get no
catalog from the registry. Failures become one ``ContestkitError`` sentence naming the
registry or image, the status where there is one, and what to do.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from contestkit.client.credentials import RegistryCredentials
from contestkit.containers import dockerengine, imageref
from contestkit.errors import ContestkitError, NotFoundError


@dataclass(frozen=True)
class LayerEvent:
    """Progress of one layer during a push (``current``/``total`` in bytes when known)."""

    layer: str
    status: str
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class PushResult:
    image: str
    tag: str
    digest: str | None
    size: int | None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return str(text).strip().splitlines()[0][:300] if str(text).strip() else type(exc).__name__


def login(credentials: RegistryCredentials, *, client: Any = None) -> str:
    """Check the team's credentials against the registry through the engine (a real ``docker login``)."""
    from docker.errors import APIError

    client = client or dockerengine.client()
    try:
        answer = client.login(
            username=credentials.username, password=credentials.password, registry=credentials.host, reauth=True
        )
    except APIError as exc:
        text = _first_line(exc)
        if "401" in text or "unauthorized" in text.lower():
            raise ContestkitError(
                f"The registry {credentials.host} refused your team's credentials (HTTP 401); run `contestkit login` "
                "and `contestkit registry login` again, and ask the organisers if it persists."
            ) from None
        raise ContestkitError(
            f"Logging in to the registry {credentials.host} failed ({text}); check that it runs and that the engine "
            "can reach it (a plain-HTTP registry other than localhost must be in the engine's insecure-registries)."
        ) from None
    return str((answer or {}).get("Status") or "Login Succeeded")


def docker_cli_login(credentials: RegistryCredentials) -> bool:
    """Store the credentials for the ``docker`` command too (``docker push`` by hand then works).

    Uses the docker CLI itself so that the user's credential store (``credsStore``) is respected;
    returns False when there is no docker CLI or it refused.
    """
    docker = shutil.which("docker")
    if docker is None:
        return False
    result = subprocess.run(
        [docker, "login", "--username", credentials.username, "--password-stdin", credentials.host],
        input=credentials.password,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0


def docker_cli_logout(host: str) -> None:
    docker = shutil.which("docker")
    if docker is not None:
        subprocess.run([docker, "logout", host], capture_output=True, text=True, timeout=60)


def tag(source: str, target: str, *, client: Any = None) -> None:
    """Tag a local image for the team registry."""
    from docker.errors import APIError, ImageNotFound

    client = client or dockerengine.client()
    repository, tag_name = imageref.split(target)
    try:
        client.api.tag(source, repository, tag_name, force=True)
    except ImageNotFound:
        raise NotFoundError(f"There is no local image {source}; build it first (`contestkit build`).") from None
    except APIError as exc:
        raise ContestkitError(f"Tagging {source} as {target} failed ({_first_line(exc)}).") from None


def push(
    reference: str,
    credentials: RegistryCredentials,
    *,
    on_event: Callable[[LayerEvent], None] | None = None,
    client: Any = None,
) -> PushResult:
    """Push ``reference`` with the team's credentials, reporting each layer's progress."""
    from docker.errors import APIError

    client = client or dockerengine.client()
    repository, tag_name = imageref.split(reference)
    auth = {"username": credentials.username, "password": credentials.password}
    digest: str | None = None
    size: int | None = None
    try:
        stream: Iterator[dict[str, Any]] = client.api.push(
            repository, tag=tag_name, stream=True, decode=True, auth_config=auth
        )
        for event in stream:
            if "error" in event or "errorDetail" in event:
                detail = event.get("errorDetail") or {}
                message = str(detail.get("message") or event.get("error") or "unknown error")
                raise _push_error(reference, credentials, message)
            aux = event.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
                size = int(aux["Size"]) if aux.get("Size") is not None else None
                continue
            layer = event.get("id")
            status = str(event.get("status") or "")
            if not layer or on_event is None:
                continue
            progress = event.get("progressDetail") or {}
            current = progress.get("current")
            total = progress.get("total")
            on_event(
                LayerEvent(
                    layer=str(layer),
                    status=status,
                    current=int(current) if isinstance(current, int) else None,
                    total=int(total) if isinstance(total, int) else None,
                )
            )
    except APIError as exc:
        raise _push_error(reference, credentials, _first_line(exc)) from None
    except requests.exceptions.ConnectionError as exc:
        raise ContestkitError(f"Pushing {reference} failed: the Docker engine went away ({exc}).") from None
    return PushResult(image=reference, tag=tag_name, digest=digest, size=size)


def _push_error(reference: str, credentials: RegistryCredentials, message: str) -> ContestkitError:
    lower = message.lower()
    if "unauthorized" in lower or "authentication required" in lower or "401" in lower:
        return ContestkitError(
            f"The registry {credentials.host} refused the push of {reference} (unauthorized); "
            "run `contestkit registry login` and try again."
        )
    if "denied" in lower or "403" in lower:
        return ContestkitError(
            f"The registry {credentials.host} denied the push of {reference} (HTTP 403); push only under your team's "
            f"namespace {credentials.url}."
        )
    if "does not exist" in lower or "no such image" in lower:
        return NotFoundError(f"There is no local image {reference} to push; build it first (`contestkit build`).")
    if "connection refused" in lower or "no such host" in lower or "timeout" in lower:
        return ContestkitError(
            f"Pushing {reference} failed: the registry {credentials.host} cannot be reached ({message}); "
            "check that it runs and ask the organisers if it is down."
        )
    return ContestkitError(f"Pushing {reference} to {credentials.host} failed: {message}.")
