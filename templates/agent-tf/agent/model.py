"""The policy/value network: the Nature-DQN CNN with two heads, as in the contest baselines.

Small on purpose (about 1.7M parameters): acting and learning stay far inside the contest's
43 ms per timestep even on a 2-core CPU. Input is the frame stack as the preprocessor makes it,
``(N, C, H, W)`` uint8; the model moves channels last because TensorFlow's CPU convolutions
only support NHWC.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer TF start-up lines in agent-stderr.txt

import keras  # noqa: E402
import numpy as np  # noqa: E402


def build_actor_critic(in_channels: int, n_actions: int, height: int = 84, width: int = 84) -> keras.Model:
    """Logits ``(N, n_actions)`` and values ``(N,)`` from a uint8 stack ``(N, C, H, W)``."""
    relu_gain = float(np.sqrt(2))

    def ortho(gain: float) -> keras.initializers.Initializer:
        # Orthogonal init (baselines' ortho_init): early policies near uniform, values small.
        return keras.initializers.Orthogonal(gain=gain)

    inputs = keras.Input(shape=(in_channels, height, width), dtype="uint8")
    x = keras.layers.Permute((2, 3, 1))(keras.ops.cast(inputs, "float32") / 255.0)
    x = keras.layers.Conv2D(32, 8, strides=4, activation="relu", kernel_initializer=ortho(relu_gain))(x)
    x = keras.layers.Conv2D(64, 4, strides=2, activation="relu", kernel_initializer=ortho(relu_gain))(x)
    x = keras.layers.Conv2D(64, 3, strides=1, activation="relu", kernel_initializer=ortho(relu_gain))(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, activation="relu", kernel_initializer=ortho(relu_gain))(x)
    logits = keras.layers.Dense(n_actions, kernel_initializer=ortho(0.01), name="policy")(x)
    value = keras.layers.Dense(1, kernel_initializer=ortho(1.0), name="value")(x)
    value = keras.layers.Reshape(())(value)
    return keras.Model(inputs, [logits, value], name="actor_critic")
