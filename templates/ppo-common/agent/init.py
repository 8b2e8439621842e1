"""The network's initial weights, drawn once in numpy so that both frameworks start identical.

PyTorch and Keras each have their own orthogonal initialiser and their own random streams, so
the same seed gave the two templates different starting networks, and with them different
learning curves. Drawing the weights here (baselines' ``ortho_init``: orthogonal matrices scaled
by a gain, zero biases) and copying them into either framework makes the seed mean the same
network in both: given the same observations they act with the same probabilities, and they
sample with the same numpy generator, so the two templates differ only by floating-point
rounding.

Weights are returned in PyTorch's layout (``(out, in, kh, kw)`` convolutions over channels-first
input, ``(out, in)`` dense layers); the Keras model converts them (see its ``model.py``).
"""

from __future__ import annotations

import numpy as np

RELU_GAIN = float(np.sqrt(2))
# (out channels, kernel, stride) of the Nature-DQN body.
CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
HIDDEN = 512


def conv_output(height: int, width: int) -> tuple[int, int]:
    """Spatial size after the three convolutions (no padding)."""
    for _, kernel, stride in CONVS:
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return height, width


def orthogonal(shape: tuple[int, ...], gain: float, rng: np.random.Generator) -> np.ndarray:
    """An orthogonal matrix of ``shape`` (rows: the first axis), as baselines' ``ortho_init``."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # a uniform draw over orthogonal matrices
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).reshape(shape).astype(np.float32)


def initial_weights(
    in_channels: int, n_actions: int, height: int, width: int, seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, weight, bias)`` per layer, in forward order, PyTorch layout."""
    rng = np.random.default_rng([seed, 0x1A17])  # its own stream: the seed's sampling stream stays untouched
    layers = []
    channels = in_channels
    for i, (out, kernel, _) in enumerate(CONVS):
        w = orthogonal((out, channels, kernel, kernel), RELU_GAIN, rng)
        layers.append((f"conv{i + 1}", w, np.zeros(out, np.float32)))
        channels = out
    h, w_ = conv_output(height, width)
    layers.append(
        ("fc", orthogonal((HIDDEN, channels * h * w_), RELU_GAIN, rng), np.zeros(HIDDEN, np.float32))
    )
    layers.append(("policy", orthogonal((n_actions, HIDDEN), 0.01, rng), np.zeros(n_actions, np.float32)))
    layers.append(("value", orthogonal((1, HIDDEN), 1.0, rng), np.zeros(1, np.float32)))
    return layers
