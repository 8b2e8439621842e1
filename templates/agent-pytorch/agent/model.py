"""The policy/value network: the Nature-DQN CNN with two heads, as in the contest baselines.

Small on purpose: about 1.7M parameters, under a millisecond per forward pass on one CPU core
for a single observation, so acting and learning fit the contest's 43 ms per timestep with room
to spare even without a GPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _init(layer: nn.Module, gain: float) -> nn.Module:
    # Orthogonal init (baselines' ortho_init): keeps early policies near uniform and values small.
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Maps a uint8 frame stack ``(N, C, H, W)`` to action logits and a state value."""

    def __init__(self, in_channels: int, n_actions: int, height: int = 84, width: int = 84) -> None:
        super().__init__()
        relu_gain = float(np.sqrt(2))
        self.body = nn.Sequential(
            _init(nn.Conv2d(in_channels, 32, 8, stride=4), relu_gain),
            nn.ReLU(),
            _init(nn.Conv2d(32, 64, 4, stride=2), relu_gain),
            nn.ReLU(),
            _init(nn.Conv2d(64, 64, 3, stride=1), relu_gain),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.body(torch.zeros(1, in_channels, height, width)).shape[1]
        self.fc = nn.Sequential(_init(nn.Linear(n_flat, 512), relu_gain), nn.ReLU())
        self.policy = _init(nn.Linear(512, n_actions), 0.01)
        self.value = _init(nn.Linear(512, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(N, n_actions)`` and values ``(N,)``; scaling to [0, 1] happens here."""
        hidden = self.fc(self.body(obs.float() / 255.0))
        return self.policy(hidden), self.value(hidden).squeeze(-1)
