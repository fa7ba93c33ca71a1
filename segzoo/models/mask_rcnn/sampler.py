"""Balanced positive / negative sampling with fixed output counts.

torchvision's `BalancedPositiveNegativeSampler` draws per image at most
`batch_size_per_image * positive_fraction` foreground elements at random and
fills the rest of `batch_size_per_image` with random background elements.
Here the draw returns a fixed number of slots (`batch_size_per_image`) with a
validity mask instead of a variable-length index list, so shapes stay static:
valid foreground slots come first, then valid background slots, then invalid
ones. All foreground slots lie within the first `num_positive_slots`.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segzoo")
class BalancedPositiveNegativeSampler:
    """Samples foreground (label 1) and background (label 0) elements; -1 is never sampled.

    Args:
        batch_size_per_image: R, the number of slots per image.
        positive_fraction: at most `int(R * positive_fraction)` foreground slots.
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        if batch_size_per_image < 1:
            raise ValueError(f"batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)

    @property
    def num_positive_slots(self) -> int:
        return int(self.batch_size_per_image * self.positive_fraction)

    def __call__(self, labels, seed=None):
        """Draws the sample.

        Args:
            labels: int32 `[B, N]`: 1 foreground, 0 background, -1 ignore.
            seed: anything `keras.random.uniform` takes (int, SeedGenerator, None).
        Returns:
            `(indices, valid, positive)`: int32 `[B, R]` indices into N, bool
            `[B, R]` slot holds a sampled element, bool `[B, R]` that element is
            foreground. Invalid slots hold index 0.
        """
        size = self.batch_size_per_image
        max_pos = self.num_positive_slots
        labels = tf.cast(labels, tf.int32)
        num = tf.shape(labels)[1]
        pad = tf.maximum(size - num, 0)
        labels = tf.pad(labels, [[0, 0], [0, pad]], constant_values=-1)
        random = keras.random.uniform(tf.shape(labels), seed=seed)
        pos_vals, pos_idx = tf.math.top_k(tf.where(labels == 1, random, -1.0), k=max_pos)
        pos_ok = pos_vals >= 0.0
        num_pos = tf.reduce_sum(tf.cast(pos_ok, tf.int32), axis=1, keepdims=True)
        neg_vals, neg_idx = tf.math.top_k(tf.where(labels == 0, random, -1.0), k=size)
        neg_ok = tf.logical_and(neg_vals >= 0.0, tf.range(size)[None, :] < size - num_pos)
        cand_idx = tf.concat([pos_idx, neg_idx], axis=1)
        cand_ok = tf.concat([pos_ok, neg_ok], axis=1)
        cand_pos = tf.concat([pos_ok, tf.zeros_like(neg_ok)], axis=1)
        # Pack the valid candidates to the front, keeping their order.
        total = max_pos + size
        order_key = tf.where(cand_ok, tf.cast(total - tf.range(total), tf.float32)[None, :], 0.0)
        _, slots = tf.math.top_k(order_key, k=size)
        indices = tf.gather(cand_idx, slots, batch_dims=1)
        valid = tf.gather(cand_ok, slots, batch_dims=1)
        positive = tf.gather(cand_pos, slots, batch_dims=1)
        indices = tf.where(valid, indices, 0)
        indices = tf.minimum(indices, tf.maximum(num - 1, 0))
        return tf.cast(indices, tf.int32), valid, positive

    def get_config(self):
        return {
            "batch_size_per_image": self.batch_size_per_image,
            "positive_fraction": self.positive_fraction,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
