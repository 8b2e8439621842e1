"""Proximal Policy Optimization for a single environment, with checkpoints (TensorFlow).

The contest gives one env instance, so rollouts are ``n_steps`` consecutive timesteps of that
one env. Episodes that end by the 4,500-timestep limit (``truncated``) are bootstrapped with the
value of their last observation instead of being treated as deaths, so the agent is not taught
that time running out is a punishment. Acting and the update are compiled with ``tf.function``:
eager Keras calls cost milliseconds each, which one timestep cannot afford.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # fewer TF start-up lines in agent-stderr.txt

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from agent.config import Config
from agent.model import build_actor_critic  # noqa: E402
from agent.rollout import Rollout  # noqa: E402


def pick_device(name: str) -> str:
    """``auto`` uses the GPU when TensorFlow sees one (the contest machine had a K80)."""
    if name == "auto":
        return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    return name


class PPO:
    """A policy that acts one observation at a time and learns from full rollouts."""

    def __init__(self, cfg: Config, obs_shape: tuple[int, int, int], n_actions: int) -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        tf.random.set_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.obs_shape = tuple(obs_shape)
        self.n_actions = n_actions
        with tf.device(self.device):
            self.model = build_actor_critic(obs_shape[0], n_actions, obs_shape[1], obs_shape[2])
            self.optimizer = tf.keras.optimizers.Adam(
                learning_rate=cfg.learning_rate, epsilon=1e-5, global_clipnorm=cfg.max_grad_norm
            )
            self.optimizer.build(self.model.trainable_variables)
        self.rollout = Rollout(cfg.n_steps, obs_shape, np.int32)
        self.timesteps = 0
        self.updates = 0
        self.last_stats: dict[str, float] = {}
        spec = tf.TensorSpec((None, *obs_shape), tf.uint8)
        self._forward = tf.function(self._forward_impl, input_signature=[spec])
        self._train_step = tf.function(
            self._train_step_impl,
            input_signature=[
                spec,
                tf.TensorSpec((None,), tf.int32),
                tf.TensorSpec((None,), tf.float32),
                tf.TensorSpec((None,), tf.float32),
                tf.TensorSpec((None,), tf.float32),
                tf.TensorSpec((None,), tf.float32),
            ],
        )

    def _forward_impl(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits, value = self.model(obs, training=False)
        return tf.nn.log_softmax(logits), value

    def act(self, obs: np.ndarray) -> tuple[int, float, float]:
        """Sample an action for one observation: (action index, its log-probability, value)."""
        log_probs, value = self._forward(obs[None])
        lp = log_probs.numpy()[0].astype(np.float64)
        probs = np.exp(lp)
        action = int(self.rng.choice(self.n_actions, p=probs / probs.sum()))
        return action, float(lp[action]), float(value.numpy()[0])

    def value(self, obs: np.ndarray) -> float:
        return float(self._forward(obs[None])[1].numpy()[0])

    def _train_step_impl(
        self,
        obs: tf.Tensor,
        actions: tf.Tensor,
        old_log_probs: tf.Tensor,
        old_values: tf.Tensor,
        adv: tf.Tensor,
        returns: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        cfg = self.cfg
        adv = (adv - tf.reduce_mean(adv)) / (tf.math.reduce_std(adv) + 1e-8)
        with tf.GradientTape() as tape:
            logits, values = self.model(obs, training=True)
            log_probs_all = tf.nn.log_softmax(logits)
            log_probs = tf.gather(log_probs_all, actions, batch_dims=1)
            entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_probs_all) * log_probs_all, axis=-1))
            ratio = tf.exp(log_probs - old_log_probs)
            clipped = tf.clip_by_value(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
            policy_loss = -tf.reduce_mean(tf.minimum(ratio * adv, clipped * adv))
            # Clipped value loss, as in baselines' ppo2.
            v_clipped = old_values + tf.clip_by_value(values - old_values, -cfg.clip_range, cfg.clip_range)
            value_loss = 0.5 * tf.reduce_mean(
                tf.maximum(tf.square(values - returns), tf.square(v_clipped - returns))
            )
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        clip_frac = tf.reduce_mean(tf.cast(tf.abs(ratio - 1) > cfg.clip_range, tf.float32))
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "clip_frac": clip_frac,
        }

    def update(self, last_value: float) -> dict[str, float]:
        """The clipped PPO update over the stored rollout; empties it."""
        cfg = self.cfg
        ro = self.rollout
        n = ro.size
        adv, returns = ro.advantages(last_value, cfg.gamma, cfg.gae_lambda)
        batch = max(1, n // cfg.n_minibatches)
        totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "clip_frac": 0.0}
        count = 0
        with tf.device(self.device):
            for _ in range(cfg.n_epochs):
                order = self.rng.permutation(n)
                for start in range(0, n - batch + 1, batch):
                    idx = order[start : start + batch]
                    stats = self._train_step(
                        ro.obs[idx],
                        ro.actions[idx],
                        ro.log_probs[idx],
                        ro.values[idx],
                        adv[idx],
                        returns[idx],
                    )
                    for k, v in stats.items():
                        totals[k] += float(v)
                    count += 1
        ro.size = 0
        self.updates += 1
        self.last_stats = {k: v / max(count, 1) for k, v in totals.items()}
        return self.last_stats

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path: Path, extra: dict | None = None) -> Path:
        """Write weights, optimizer state and metadata to one .npz file, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "obs_shape": list(self.obs_shape),
            "n_actions": self.n_actions,
            "timesteps": self.timesteps,
            "updates": self.updates,
            "config": asdict(self.cfg),
            "saved_at": time.time(),
            **(extra or {}),
        }
        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
        arrays.update({f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(self.optimizer.variables)})
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, path)
        return path

    def load(self, path: Path, *, weights_only: bool = False) -> dict:
        """Start from a checkpoint; ``weights_only`` keeps a fresh optimizer (fine-tuning)."""
        with np.load(path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if list(meta["obs_shape"]) != list(self.obs_shape) or meta["n_actions"] != self.n_actions:
                raise ValueError(
                    f"checkpoint {path} was trained with observations {tuple(meta['obs_shape'])} and "
                    f"{meta['n_actions']} actions, but this run uses {self.obs_shape} and {self.n_actions}: "
                    "keep the preprocessing settings and the game family the same"
                )
            n_weights = len(self.model.get_weights())
            self.model.set_weights([data[f"w{i}"] for i in range(n_weights)])
            if not weights_only:
                for i, var in enumerate(self.optimizer.variables):
                    if f"o{i}" in data:
                        var.assign(data[f"o{i}"])
        return meta
