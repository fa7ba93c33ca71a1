"""One place that maps segzoo's `--precision` to a Keras dtype policy.

    from segzoo.training.precision import precision_scope, resolve_precision
    precision = resolve_precision(args.precision, args.mixed_precision)   # "bfloat16"
    with precision_scope(precision):
        model = load_checkpoint("runs/unet/model.keras")   # layers built mixed_bfloat16

    --precision float32   -> "float32"          (default: float32 variables and compute)
    --precision bfloat16  -> "mixed_bfloat16"   (float32 variables, bfloat16 compute)
    --precision float16   -> "mixed_float16"    (float32 variables, float16 compute;
                                                 `model.compile` adds loss scaling)
    --mixed-precision     =  --precision float16 (the older flag, kept as its alias)

A segzoo model's precision is decided when it is built or loaded: its
checkpoint stores no dtype (`get_config` holds constructor arguments only), so
the Keras global policy in force while `segzoo.get_model` or `load_checkpoint`
runs is the policy of every layer built then. The numerically delicate parts
stay float32 inside the models whatever the policy: logits are returned in
float32 (FCN / U-Net's last layer, Mask R-CNN's heads cast before softmax and
box decoding), and RoI coordinates, box decoding, losses and paste-back are
computed in float32.

When bfloat16 pays: on CPUs with AMX (Intel Sapphire Rapids and later) or
AVX512-BF16 (Cooper Lake, AMD Zen 4 and later), whose oneDNN kernels run
bfloat16 convolutions and matmuls several times faster than float32, and on
GPUs from NVIDIA Ampere on. On AVX2-only CPUs bfloat16 is emulated and slower
than float32; there keep the float32 default (`benchmarks/machine.py` prints
which instructions the CPU has).
"""

from __future__ import annotations

import contextlib

import keras

from segzoo.errors import ArgumentError, arg

PRECISIONS = ("float32", "bfloat16", "float16")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
COMPUTE_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def resolve_precision(precision=None, mixed_precision=False) -> str:
    """The precision name of the `--precision` / `--mixed-precision` flags.

    Args:
        precision: None (float32 unless `mixed_precision`) or one of `PRECISIONS`.
        mixed_precision: the `--mixed-precision` flag, an alias of float16.
    Raises:
        ValueError: an unknown name, or `--mixed-precision` with another precision.
    """
    if precision is None:
        return "float16" if mixed_precision else "float32"
    if precision not in PRECISIONS:
        raise ArgumentError(f"{arg('precision', precision)}: expected one of {', '.join(PRECISIONS)}")
    if mixed_precision and precision != "float16":
        raise ArgumentError(f"{arg('mixed_precision', True)} means {arg('precision', 'float16')} but "
                            f"{arg('precision', precision)} was given; pass one of them")
    return precision


def policy_name(precision) -> str:
    """The Keras dtype policy name of a precision ("bfloat16" -> "mixed_bfloat16")."""
    return POLICIES[resolve_precision(precision)]


def precision_of_policy(policy) -> str:
    """The precision name of a Keras policy (name or DTypePolicy); float32 for others."""
    name = getattr(policy, "name", policy)
    for precision, policy_ in POLICIES.items():
        if policy_ == name:
            return precision
    return "float32"


def set_precision(precision) -> str:
    """Sets the Keras global dtype policy for `precision`; returns the previous policy name."""
    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy_name(precision))
    return previous


@contextlib.contextmanager
def precision_scope(precision):
    """Builds / loads models inside at `precision`; restores the previous global policy after."""
    previous = set_precision(precision)
    try:
        yield policy_name(precision)
    finally:
        keras.config.set_dtype_policy(previous)


def model_precision(model) -> str:
    """The precision a built segzoo model computes in (its own dtype policy)."""
    return precision_of_policy(model.dtype_policy)


def load_checkpoint_at(path, precision=None, **kwargs):
    """`segzoo.models.base.load_checkpoint(path)` with its layers built at `precision`."""
    from segzoo.models.base import load_checkpoint

    with precision_scope(resolve_precision(precision)):
        return load_checkpoint(path, **kwargs)
