"""Proximal Policy Optimization over one env (evaluation) or several (pretraining), with checkpoints.

The contest gives one env instance, so during evaluation rollouts are ``n_steps`` consecutive
timesteps of that one env; pretraining steps ``n_envs`` envs in lockstep. Episodes that end by the
4,500-timestep limit (``truncated``) are bootstrapped with the value of their last observation
instead of being treated as deaths, so the agent is not taught that time running out is a
punishment.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from agent.checkpoints import CheckpointError, check_compatible, digest, unreadable
from agent.config import Config
from agent.framework import FRAMEWORK
from agent.model import ActorCritic
from agent.rollout import Rollout, explained_variance, sample_actions


def pick_device(name: str) -> torch.device:
    """``auto`` uses the GPU when one is present (the contest machine had a K80), else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class BaselinesAdam(torch.optim.Optimizer):
    """Adam as TensorFlow computes it: epsilon is added to the uncorrected second moment.

    That is the Adam of baselines' ppo2 (``tf.train.AdamOptimizer``) and of Keras, so of the
    TensorFlow template. ``torch.optim.Adam`` adds epsilon after the bias correction, which for
    the first updates is an epsilon about 30 times smaller: with it the two templates drifted
    apart within one update (values 5% apart); with this one they agree to within 3e-5.
    """

    def __init__(
        self, params: Any, lr: float, eps: float = 1e-5, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        super().__init__(params, {"lr": lr, "eps": eps, "betas": betas})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(beta1).add_(p.grad, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                alpha = group["lr"] * (1 - beta2**t) ** 0.5 / (1 - beta1**t)
                p.addcdiv_(state["m"], state["v"].sqrt().add_(group["eps"]), value=-alpha)


class PPO:
    """A policy that acts one observation at a time and learns from full rollouts."""

    def __init__(self, cfg: Config, obs_shape: tuple[int, int, int], n_actions: int, n_envs: int = 1) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.obs_shape = obs_shape
        self.n_actions = n_actions
        self.model = ActorCritic(obs_shape[0], n_actions, obs_shape[1], obs_shape[2], seed=cfg.seed).to(
            self.device
        )
        self.optimizer = BaselinesAdam(self.model.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.rollout = Rollout(cfg.n_steps, obs_shape, np.int64, n_envs)
        self.timesteps = 0
        self.updates = 0
        self.last_stats: dict[str, float] = {}

    @torch.inference_mode()
    def act_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample actions for a batch ``(n, C, H, W)``: action indices, their log-probabilities, values."""
        logits, values = self.model(torch.from_numpy(obs).to(self.device))
        log_probs = torch.log_softmax(logits, dim=-1).cpu().numpy()
        actions = sample_actions(log_probs, self.rng)
        return actions, log_probs[np.arange(len(actions)), actions], values.cpu().numpy()

    def act(self, obs: np.ndarray) -> tuple[int, float, float]:
        """Sample an action for one observation: (action index, its log-probability, value)."""
        actions, log_probs, values = self.act_batch(obs[None])
        return int(actions[0]), float(log_probs[0]), float(values[0])

    @torch.inference_mode()
    def values(self, obs: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(obs).to(self.device))[1].cpu().numpy()

    def value(self, obs: np.ndarray) -> float:
        return float(self.values(obs[None])[0])

    def weights_digest(self) -> str:
        """Fingerprint of the network's weights (see ``agent.checkpoints.digest``)."""
        return digest(t.detach().cpu().numpy() for t in self.model.state_dict().values())

    def update(self, last_value: float) -> dict[str, float]:
        """The clipped PPO update over the stored rollout; empties it."""
        cfg = self.cfg
        ro = self.rollout
        adv, returns = ro.advantages(last_value, cfg.gamma, cfg.gae_lambda)
        flat = ro.flat()
        n = len(flat["actions"])
        # The schedule's fraction at the start of this rollout, as baselines' ppo2 computes it.
        frac = cfg.schedule(self.timesteps - n)
        clip_range = cfg.clip_range * frac
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.learning_rate * frac
        dev = self.device
        obs = torch.from_numpy(flat["obs"]).to(dev)
        actions = torch.from_numpy(flat["actions"]).to(dev)
        old_log_probs = torch.from_numpy(flat["log_probs"]).to(dev)
        old_values = torch.from_numpy(flat["values"]).to(dev)
        adv_t = torch.from_numpy(adv.reshape(-1)).to(dev)
        returns_t = torch.from_numpy(returns.reshape(-1)).to(dev)
        batch = max(1, n // cfg.n_minibatches)
        stats = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), 0.0)
        count = 0
        self.model.train()
        for _ in range(cfg.n_epochs):
            order = torch.from_numpy(self.rng.permutation(n)).to(dev)
            for start in range(0, n - batch + 1, batch):
                idx = order[start : start + batch]
                logits, values = self.model(obs[idx])
                log_probs_all = torch.log_softmax(logits, dim=-1)
                log_probs = log_probs_all.gather(1, actions[idx].unsqueeze(1)).squeeze(1)
                entropy = -(log_probs_all.exp() * log_probs_all).sum(-1).mean()
                a = adv_t[idx]
                a = (a - a.mean()) / (
                    a.std(correction=0) + 1e-8
                )  # population std, as baselines and the TF template
                ratio = torch.exp(log_probs - old_log_probs[idx])
                clipped = torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -torch.min(ratio * a, clipped * a).mean()
                # Clipped value loss, as in baselines' ppo2.
                v_old = old_values[idx]
                v_clipped = v_old + torch.clamp(values - v_old, -clip_range, clip_range)
                value_loss = (
                    0.5
                    * torch.max(
                        F.mse_loss(values, returns_t[idx], reduction="none"),
                        F.mse_loss(v_clipped, returns_t[idx], reduction="none"),
                    ).mean()
                )
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                stats["policy_loss"] += float(policy_loss.detach())
                stats["value_loss"] += float(value_loss.detach())
                stats["entropy"] += float(entropy.detach())
                with torch.no_grad():  # approximate KL(old || new), the low-variance estimator CleanRL logs
                    log_ratio = log_probs - old_log_probs[idx]
                    stats["approx_kl"] += float(((log_ratio.exp() - 1) - log_ratio).mean())
                    stats["clip_fraction"] += float(((ratio - 1).abs() > clip_range).float().mean())
                count += 1
        self.model.eval()
        ro.size = 0
        self.updates += 1
        self.last_stats = {k: v / max(count, 1) for k, v in stats.items()}
        self.last_stats["explained_variance"] = explained_variance(flat["values"], returns.reshape(-1))
        self.last_stats["learning_rate"] = cfg.learning_rate * frac
        self.last_stats["lr_frac"] = frac
        return self.last_stats

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path: Path, extra: dict | None = None) -> Path:
        """Write a checkpoint atomically (a crash mid-write never leaves a torn file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "framework": FRAMEWORK,
                "obs_shape": list(self.obs_shape),
                "n_actions": self.n_actions,
                "timesteps": self.timesteps,
                "updates": self.updates,
                "config": asdict(self.cfg),
                "saved_at": time.time(),
                **(extra or {}),
            },
            tmp,
        )
        os.replace(tmp, path)
        return path

    def load(self, path: Path, *, weights_only: bool = False) -> dict:
        """Start from a checkpoint; ``weights_only`` keeps a fresh optimizer (fine-tuning)."""
        ckpt = read_checkpoint(path)
        check_compatible(ckpt, path, self.obs_shape, self.n_actions)
        self.model.load_state_dict(ckpt["model"])
        if not weights_only:
            if "optimizer" in ckpt:
                self.optimizer.load_state_dict(ckpt["optimizer"])
            self.timesteps = int(ckpt.get("timesteps", 0))
            self.updates = int(ckpt.get("updates", 0))
        return ckpt


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (weights and metadata); CheckpointError for anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except OSError:
        raise
    except Exception as exc:  # torch raises many types for a file it cannot unpickle
        raise unreadable(path, exc) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "n_actions" not in ckpt:
        raise unreadable(path)
    return ckpt


__all__ = ["PPO", "CheckpointError", "pick_device", "read_checkpoint"]
