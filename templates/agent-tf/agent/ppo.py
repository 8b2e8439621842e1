"""Proximal Policy Optimization over one env (evaluation) or several (pretraining), with checkpoints
(TensorFlow).

The contest gives one env instance, so during evaluation rollouts are ``n_steps`` consecutive
timesteps of that one env; pretraining steps ``n_envs`` envs in lockstep. Episodes that end by the
4,500-timestep limit (``truncated``) are bootstrapped with the value of their last observation
instead of being treated as deaths, so the agent is not taught that time running out is a
punishment. Acting and the update are compiled with ``tf.function``: eager Keras calls cost
milliseconds each, which one timestep cannot afford.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import agent.quiet  # noqa: F401, E402  TensorFlow loaded without its start-up lines on stderr
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from agent.checkpoints import CheckpointError, check_compatible, digest, unreadable  # noqa: E402
from agent.config import Config  # noqa: E402
from agent.framework import FRAMEWORK  # noqa: E402
from agent.model import build_actor_critic  # noqa: E402
from agent.rollout import Rollout, explained_variance, sample_actions  # noqa: E402


def pick_device(name: str) -> str:
    """``auto`` uses the GPU when TensorFlow sees one (the contest machine had a K80)."""
    if name == "auto":
        return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    return name


class PPO:
    """A policy that acts one observation at a time and learns from full rollouts."""

    def __init__(self, cfg: Config, obs_shape: tuple[int, int, int], n_actions: int, n_envs: int = 1) -> None:
        self.cfg = cfg
        if cfg.threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
                tf.config.threading.set_inter_op_parallelism_threads(cfg.threads)
            except RuntimeError:  # TensorFlow already started in this process: keep its threads
                pass
        self.device = pick_device(cfg.device)
        tf.random.set_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.obs_shape = tuple(obs_shape)
        self.n_actions = n_actions
        with tf.device(self.device):
            self.model = build_actor_critic(
                obs_shape[0], n_actions, obs_shape[1], obs_shape[2], seed=cfg.seed
            )
            self.optimizer = tf.keras.optimizers.Adam(
                learning_rate=cfg.learning_rate, epsilon=1e-5, global_clipnorm=cfg.max_grad_norm
            )
            self.optimizer.build(self.model.trainable_variables)
        self.rollout = Rollout(cfg.n_steps, obs_shape, np.int32, n_envs)
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
                tf.TensorSpec((), tf.float32),
            ],
        )

    def _forward_impl(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits, value = self.model(obs, training=False)
        return tf.nn.log_softmax(logits), value

    def act_batch(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample actions for a batch ``(n, C, H, W)``: action indices, their log-probabilities, values."""
        log_probs, values = self._forward(obs)
        lp = log_probs.numpy()
        actions = sample_actions(lp, self.rng)
        return actions, lp[np.arange(len(actions)), actions], values.numpy()

    def act(self, obs: np.ndarray) -> tuple[int, float, float]:
        """Sample an action for one observation: (action index, its log-probability, value)."""
        actions, log_probs, values = self.act_batch(obs[None])
        return int(actions[0]), float(log_probs[0]), float(values[0])

    def values(self, obs: np.ndarray) -> np.ndarray:
        return self._forward(obs)[1].numpy()

    def value(self, obs: np.ndarray) -> float:
        return float(self.values(obs[None])[0])

    def weights_digest(self) -> str:
        """Fingerprint of the network's weights (see ``agent.checkpoints.digest``)."""
        return digest(self.model.get_weights())

    def _train_step_impl(
        self,
        obs: tf.Tensor,
        actions: tf.Tensor,
        old_log_probs: tf.Tensor,
        old_values: tf.Tensor,
        adv: tf.Tensor,
        returns: tf.Tensor,
        clip_range: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        cfg = self.cfg
        adv = (adv - tf.reduce_mean(adv)) / (tf.math.reduce_std(adv) + 1e-8)
        with tf.GradientTape() as tape:
            logits, values = self.model(obs, training=True)
            log_probs_all = tf.nn.log_softmax(logits)
            log_probs = tf.gather(log_probs_all, actions, batch_dims=1)
            entropy = -tf.reduce_mean(tf.reduce_sum(tf.exp(log_probs_all) * log_probs_all, axis=-1))
            ratio = tf.exp(log_probs - old_log_probs)
            clipped = tf.clip_by_value(ratio, 1 - clip_range, 1 + clip_range)
            policy_loss = -tf.reduce_mean(tf.minimum(ratio * adv, clipped * adv))
            # Clipped value loss, as in baselines' ppo2.
            v_clipped = old_values + tf.clip_by_value(values - old_values, -clip_range, clip_range)
            value_loss = 0.5 * tf.reduce_mean(
                tf.maximum(tf.square(values - returns), tf.square(v_clipped - returns))
            )
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        clip_fraction = tf.reduce_mean(tf.cast(tf.abs(ratio - 1) > clip_range, tf.float32))
        log_ratio = log_probs - old_log_probs  # approximate KL(old || new), the estimator CleanRL logs
        approx_kl = tf.reduce_mean((tf.exp(log_ratio) - 1) - log_ratio)
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }

    def update(self, last_value: float) -> dict[str, float]:
        """The clipped PPO update over the stored rollout; empties it."""
        cfg = self.cfg
        ro = self.rollout
        adv, returns = ro.advantages(last_value, cfg.gamma, cfg.gae_lambda)
        adv, returns = adv.reshape(-1), returns.reshape(-1)
        flat = ro.flat()
        n = len(flat["actions"])
        # The schedule's fraction at the start of this rollout, as baselines' ppo2 computes it.
        frac = cfg.schedule(self.timesteps - n)
        clip_range = np.float32(cfg.clip_range * frac)
        self.optimizer.learning_rate.assign(cfg.learning_rate * frac)
        batch = max(1, n // cfg.n_minibatches)
        totals = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), 0.0)
        count = 0
        with tf.device(self.device):
            for _ in range(cfg.n_epochs):
                order = self.rng.permutation(n)
                for start in range(0, n - batch + 1, batch):
                    idx = order[start : start + batch]
                    stats = self._train_step(
                        flat["obs"][idx],
                        flat["actions"][idx],
                        flat["log_probs"][idx],
                        flat["values"][idx],
                        adv[idx],
                        returns[idx],
                        clip_range,
                    )
                    for k, v in stats.items():
                        totals[k] += float(v)
                    count += 1
        ro.size = 0
        self.updates += 1
        self.last_stats = {k: v / max(count, 1) for k, v in totals.items()}
        self.last_stats["explained_variance"] = explained_variance(flat["values"], returns)
        self.last_stats["learning_rate"] = cfg.learning_rate * frac
        self.last_stats["lr_frac"] = frac
        return self.last_stats

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path: Path, extra: dict | None = None) -> Path:
        """Write weights, optimizer state and metadata to one .npz file, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "framework": FRAMEWORK,
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
        meta, arrays = read_checkpoint(path)
        check_compatible(meta, path, self.obs_shape, self.n_actions)
        n_weights = len(self.model.get_weights())
        self.model.set_weights([arrays[f"w{i}"] for i in range(n_weights)])
        if not weights_only:
            for i, var in enumerate(self.optimizer.variables):
                if f"o{i}" in arrays:
                    var.assign(arrays[f"o{i}"])
            self.timesteps = int(meta.get("timesteps", 0))
            self.updates = int(meta.get("updates", 0))
        return meta


def read_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """A checkpoint's metadata and arrays; CheckpointError for any other file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            arrays = {k: data[k] for k in data.files if k != "meta"}
    except OSError:
        if not path.exists():
            raise
        raise unreadable(path) from None
    except Exception as exc:  # not an .npz, or one without our metadata
        raise unreadable(path, exc) from None
    if not isinstance(meta, dict) or "n_actions" not in meta:
        raise unreadable(path)
    return meta, arrays


__all__ = ["PPO", "CheckpointError", "pick_device", "read_checkpoint"]
