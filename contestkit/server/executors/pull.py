"""Pulling a job's image from the contest registry with the evaluator's account, before its levels run.

Why a module of its own: both the Docker executor and a host's ``evaluator:`` function evaluate
images from the local Docker engine, so both pull the same way; evaluating by the pulled digest
means every level (and a resumed job after a restart) runs the very image that was pulled, even if
the team pushes the same tag again meanwhile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from contestkit.errors import ContestkitError

log = logging.getLogger("contestkit.server.pull")

# Answers that no retry changes: the image is not there, or the account may not pull it.
_FINAL = ("not found", "manifest unknown", "unauthorized", "denied", "invalid reference")


@dataclass(frozen=True)
class RegistryAccount:
    """The evaluator's pull account in the contest registry (server.yaml), and how long a pull is
    retried while the registry does not answer (``pull_retry_seconds``)."""

    username: str
    password: str
    retry_seconds: float = 120.0


def pull_image(image: str, account: RegistryAccount, *, sleep=time.sleep) -> str:  # type: ignore[no-untyped-def]
    """Pull a team's image; returns its ``repo@sha256:`` reference (or ``image`` when none is known).

    A registry that is down or failing (refused connections, 5xx, timeouts) is tried again with
    backoff (0.5 s doubling to 10 s) for ``account.retry_seconds``: a minute of registry maintenance
    then delays the queued jobs instead of failing them all. An image that is not there, or that the
    account may not pull, fails at once; after the last try the job fails with the registry's reason.
    """
    from docker.errors import APIError, ImageNotFound

    from contestkit.containers import dockerengine, imageref

    deadline = time.monotonic() + account.retry_seconds
    delay = 0.5
    repository, tag = imageref.split(image)
    while True:
        client = dockerengine.client()
        try:
            client.api.pull(
                repository, tag=tag, auth_config={"username": account.username, "password": account.password}
            )
            pulled = client.images.get(image)
            break
        except ImageNotFound:
            raise ContestkitError(f"The image {image} was not found after pulling it.") from None
        except APIError as exc:
            reason = str(exc.explanation or exc)
            if "not found" in reason.lower() or "manifest unknown" in reason.lower():
                raise ContestkitError(
                    f"The image {image} is not in the registry; push it first (`contestkit push`)."
                ) from None
            if any(word in reason.lower() for word in _FINAL) or time.monotonic() + delay > deadline:
                raise ContestkitError(f"Pulling {image} failed: {reason}.") from None
            log.warning("pulling %s failed (%s); trying again in %.1f s", image, reason, delay)
        finally:
            client.close()
        sleep(delay)
        delay = min(delay * 2, 10.0)
    base = repository
    for digest_ref in pulled.attrs.get("RepoDigests") or []:
        if digest_ref.startswith(base + "@"):
            return digest_ref
    return image
