"""What makes a checkpoint usable by this agent, checked the same way by both frameworks.

A checkpoint is only meaningful for the network it was written by: the same framework (a
PyTorch ``.pt`` cannot be read by Keras and the reverse), the same observation shape (the
preprocessing settings) and the same action set (the game family). Every mismatch is refused
with one sentence saying which, before any weight is touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from agent.framework import CHECKPOINT_SUFFIX, FRAMEWORK

OTHER_SUFFIX = {".pt": ".npz", ".npz": ".pt"}


class CheckpointError(ValueError):
    """A checkpoint that this agent cannot start from; the message says why in one sentence."""


def unreadable(path: Path, exc: BaseException | None = None) -> CheckpointError:
    """The error for a file this framework cannot read as one of its checkpoints."""
    if path.suffix == OTHER_SUFFIX.get(CHECKPOINT_SUFFIX):
        other = "TensorFlow" if path.suffix == ".npz" else "PyTorch"
        return CheckpointError(
            f"{path} is a {other} checkpoint, but this is the {FRAMEWORK} template: "
            f"use a {CHECKPOINT_SUFFIX} checkpoint written by this project's pretraining."
        )
    detail = f" ({type(exc).__name__})" if exc is not None else ""
    return CheckpointError(
        f"{path} is not a {FRAMEWORK} checkpoint of this template{detail}: "
        f"use a {CHECKPOINT_SUFFIX} file written by this project's pretraining or evaluation."
    )


def check_compatible(meta: dict[str, Any], path: Path, obs_shape: tuple[int, ...], n_actions: int) -> None:
    """Refuse a checkpoint from the other framework, other preprocessing or another action set."""
    framework = meta.get("framework", FRAMEWORK)
    if framework != FRAMEWORK:
        raise CheckpointError(
            f"{path} was written by the {framework} template, but this is the {FRAMEWORK} template: "
            "pretrain again with this project."
        )
    if int(meta["n_actions"]) != n_actions:
        raise CheckpointError(
            f"{path} was trained with {meta['n_actions']} actions, but this game has {n_actions}: "
            "a checkpoint only carries over within one game family (the Sonic games share one action set)."
        )
    if list(meta["obs_shape"]) != list(obs_shape):
        raise CheckpointError(
            f"{path} was trained on observations {tuple(meta['obs_shape'])}, "
            f"but this run makes {tuple(obs_shape)}: "
            "keep the preprocessing settings (frame size, grayscale, frame stack) the same."
        )


def digest(arrays: Iterable[np.ndarray]) -> str:
    """A short fingerprint of a network's weights, comparable between a checkpoint and a live agent."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]
