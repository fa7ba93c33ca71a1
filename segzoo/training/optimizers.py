"""Optimizers by name: SGD with momentum, Adam, AdamW, all with weight decay."""

from __future__ import annotations

import keras

OPTIMIZERS = ("sgd", "adam", "adamw")

# Biases and normalisation parameters are not decayed (standard practice).
NO_DECAY_NAMES = ("bias", "gamma", "beta")


def build_optimizer(name: str, learning_rate, *, momentum: float = 0.9, weight_decay: float = 0.0,
                    clipnorm: float | None = None) -> keras.optimizers.Optimizer:
    """Returns a Keras optimizer.

    Args:
        name: "sgd" (momentum, the FCN recipe), "adam" or "adamw".
        learning_rate: float or a `LearningRateSchedule`.
        momentum: SGD momentum (FCN: 0.99 with its unnormalised loss).
        weight_decay: decoupled decay, applied as `w -= lr * weight_decay * w`
            each step (Keras's `weight_decay`; for plain SGD this equals L2
            regularisation `weight_decay / 2 * |w|^2`). Biases, BatchNorm
            gamma/beta are excluded.
        clipnorm: optional per-variable gradient norm clip.

    Mixed precision needs no wrapper here: `model.compile` wraps the optimizer
    in a `LossScaleOptimizer` when the model's policy is mixed_float16.

    Raises:
        ValueError: unknown `name`.
    """
    name = name.lower()
    common = {"learning_rate": learning_rate, "clipnorm": clipnorm}
    if weight_decay:
        common["weight_decay"] = float(weight_decay)
    if name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=momentum, **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "adamw":
        common.setdefault("weight_decay", 0.0)
        optimizer = keras.optimizers.AdamW(**common)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer


def build_training_optimizer(recipe, total_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer of a recipe over `total_steps` steps: `PolyWarmup` schedule
    (poly power `recipe.poly_power`, 0 = constant after warm-up) and `build_optimizer`."""
    from segzoo.training.schedules import PolyWarmup

    total_steps = max(1, int(total_steps))
    warmup = min(recipe.warmup_steps, total_steps)
    schedule = PolyWarmup(recipe.learning_rate, total_steps, warmup,
                          power=recipe.poly_power if recipe.schedule == "poly" else 0.0)
    return build_optimizer(recipe.optimizer, schedule, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay, clipnorm=recipe.clipnorm)
