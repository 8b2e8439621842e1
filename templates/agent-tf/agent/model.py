"""The policy/value network: the Nature-DQN CNN with two heads, as in the contest baselines.

Small on purpose (about 1.7M parameters): acting and learning stay far inside the contest's
43 ms per timestep even on a 2-core CPU. Input is the frame stack as the preprocessor makes it,
``(N, C, H, W)`` uint8; the model moves channels last because TensorFlow's CPU convolutions
only support NHWC. Its initial weights come from ``agent.init`` (numpy, seeded, PyTorch's
layout), converted here, so both templates start from the same network for the same seed.
"""

from __future__ import annotations

import agent.quiet  # noqa: F401  TensorFlow loaded without its start-up lines on stderr
import keras  # noqa: E402
import numpy as np  # noqa: E402

from agent.init import CONVS, HIDDEN, conv_output, initial_weights  # noqa: E402


def build_actor_critic(
    in_channels: int, n_actions: int, height: int = 84, width: int = 84, seed: int = 0
) -> keras.Model:
    """Logits ``(N, n_actions)`` and values ``(N,)`` from a uint8 stack ``(N, C, H, W)``."""
    inputs = keras.Input(shape=(in_channels, height, width), dtype="uint8")
    x = keras.layers.Permute((2, 3, 1))(keras.ops.cast(inputs, "float32") / 255.0)
    convs = []
    for out, kernel, stride in CONVS:
        convs.append(keras.layers.Conv2D(out, kernel, strides=stride, activation="relu"))
        x = convs[-1](x)
    x = keras.layers.Flatten()(x)
    fc = keras.layers.Dense(HIDDEN, activation="relu")
    policy = keras.layers.Dense(n_actions, name="policy")
    value_head = keras.layers.Dense(1, name="value")
    x = fc(x)
    logits = policy(x)
    value = keras.layers.Reshape(())(value_head(x))
    model = keras.Model(inputs, [logits, value], name="actor_critic")

    h, w = conv_output(height, width)
    channels = CONVS[-1][0]
    for layer, (name, weight, bias) in zip(
        [*convs, fc, policy, value_head],
        initial_weights(in_channels, n_actions, height, width, seed),
        strict=True,
    ):
        if name.startswith("conv"):
            kernel = weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
        elif name == "fc":
            # PyTorch flattens (C, H, W); Keras, channels last, flattens (H, W, C).
            kernel = (
                weight.reshape(HIDDEN, channels, h, w).transpose(2, 3, 1, 0).reshape(h * w * channels, HIDDEN)
            )
        else:
            kernel = weight.T
        layer.set_weights([np.ascontiguousarray(kernel), bias])
    return model
