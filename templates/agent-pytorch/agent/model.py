"""The policy/value network: the Nature-DQN CNN with two heads, as in the contest baselines.

Small on purpose: about 1.7M parameters, under a millisecond per forward pass on one CPU core
for a single observation, so acting and learning fit the contest's 43 ms per timestep with room
to spare even without a GPU. Its initial weights come from ``agent.init`` (numpy, seeded), the
same numbers the TensorFlow template starts from.
"""

from __future__ import annotations

import torch
from torch import nn

from agent.init import CONVS, HIDDEN, conv_output, initial_weights


class ActorCritic(nn.Module):
    """Maps a uint8 frame stack ``(N, C, H, W)`` to action logits and a state value."""

    def __init__(
        self, in_channels: int, n_actions: int, height: int = 84, width: int = 84, seed: int = 0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out, kernel, stride in CONVS:
            layers += [nn.Conv2d(channels, out, kernel, stride=stride), nn.ReLU()]
            channels = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        h, w = conv_output(height, width)
        self.fc = nn.Sequential(nn.Linear(channels * h * w, HIDDEN), nn.ReLU())
        self.policy = nn.Linear(HIDDEN, n_actions)
        self.value = nn.Linear(HIDDEN, 1)
        targets = [m for m in self.body if isinstance(m, nn.Conv2d)] + [self.fc[0], self.policy, self.value]
        with torch.no_grad():
            for module, (_, weight, bias) in zip(
                targets, initial_weights(in_channels, n_actions, height, width, seed), strict=True
            ):
                module.weight.copy_(torch.from_numpy(weight))
                module.bias.copy_(torch.from_numpy(bias))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, n_actions)`` and values ``(N,)``; scaling to [0, 1] happens here."""
        hidden = self.fc(self.body(obs.float() / 255.0))
        return self.policy(hidden), self.value(hidden).squeeze(-1)
