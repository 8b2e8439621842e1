"""Pulling a job's image from the contest registry with the evaluator's account, before its levels run.

Why a module of its own: both the Docker executor and a host's ``evaluator:`` function evaluate
images from the local Docker engine, so both pull the same way; evaluating by the pulled digest
means every level (and a resumed job after a restart) runs the very image that was pulled, even if
the team pushes the same tag again meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from contestkit.errors import ContestkitError


@dataclass(frozen=True)
class RegistryAccount:
    """The evaluator's pull account in the contest registry (server.yaml)."""

    username: str
    password: str


def pull_image(image: str, account: RegistryAccount) -> str:
    """Pull a team's image; returns its ``repo@sha256:`` reference (or ``image`` when none is known)."""
    from docker.errors import APIError, ImageNotFound

    from contestkit import dockerengine, imageref

    client = dockerengine.client()
    repository, tag = imageref.split(image)
    try:
        client.api.pull(repository, tag=tag, auth_config={"username": account.username, "password": account.password})
        pulled = client.images.get(image)
    except ImageNotFound:
        raise ContestkitError(f"The image {image} was not found after pulling it.") from None
    except APIError as exc:
        reason = exc.explanation or str(exc)
        if "not found" in str(reason).lower() or "manifest unknown" in str(reason).lower():
            raise ContestkitError(
                f"The image {image} is not in the registry; push it first (`contestkit push`)."
            ) from None
        raise ContestkitError(f"Pulling {image} failed: {reason}.") from None
    finally:
        client.close()
    base = repository
    for digest_ref in pulled.attrs.get("RepoDigests") or []:
        if digest_ref.startswith(base + "@"):
            return digest_ref
    return image
