"""Learning-rate schedules."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segzoo")
class PolyWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then polynomial ("poly") decay, as in DeepLab / PSPNet.

        step < warmup_steps:  lr = base * (f + (1 - f) * step / warmup_steps)
        otherwise:            lr = end + (base - end) * (1 - p) ** power,
                              p = min(1, (step - warmup_steps) / (decay_steps - warmup_steps))

    with f = `warmup_factor`. `decay_steps` counts the whole run (warm-up
    included). `power=0` gives a constant rate after warm-up.

    Args:
        learning_rate: base rate reached at the end of the warm-up.
        decay_steps: total optimizer steps of the run (>= 1).
        warmup_steps: steps of linear warm-up (0 = none).
        power: poly exponent (0.9 in DeepLab).
        end_learning_rate: rate at the last step.
        warmup_factor: fraction of the base rate at step 0.
    """

    def __init__(self, learning_rate: float, decay_steps: int, warmup_steps: int = 0,
                 power: float = 0.9, end_learning_rate: float = 0.0, warmup_factor: float = 0.001):
        if int(decay_steps) < 1:
            raise ValueError(f"decay_steps must be >= 1, got {decay_steps!r}")
        if not 0 <= int(warmup_steps) <= int(decay_steps):
            raise ValueError(f"warmup_steps must be in [0, decay_steps={decay_steps}], got {warmup_steps!r}")
        self.learning_rate = float(learning_rate)
        self.decay_steps = int(decay_steps)
        self.warmup_steps = int(warmup_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        base = tf.constant(self.learning_rate, tf.float32)
        end = tf.constant(self.end_learning_rate, tf.float32)
        warm = float(max(self.warmup_steps, 1))
        warm_lr = base * (self.warmup_factor + (1.0 - self.warmup_factor) * step / warm)
        span = float(max(self.decay_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        poly_lr = end + (base - end) * tf.pow(1.0 - progress, self.power)
        if self.warmup_steps == 0:
            return poly_lr
        return tf.where(step < self.warmup_steps, warm_lr, poly_lr)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
            "warmup_factor": self.warmup_factor,
        }
