"""Feature Pyramid Network (Lin et al. 2017), laid out as torchvision's FPN.

Bottom-up features C_l (stride 2**l) -> lateral 1x1 convs -> top-down path
(coarser merged map upsampled by nearest neighbour, added to the lateral) ->
3x3 output convs -> P_l, all with `num_channels` channels; optionally one more
level P_{top+1} by max pooling P_top with kernel 1 and stride 2 (torchvision's
``LastLevelMaxPool``, detectron2's ``LastLevelMaxPool``), which Mask R-CNN
uses as P6 for the 512-pixel anchors only.
"""

from __future__ import annotations

import re

import keras
from keras import ops

__all__ = ["FeaturePyramid", "nearest_resize"]


def nearest_resize(features, height, width):
    """Nearest-neighbour resize with torch's ``F.interpolate(size=...)`` rule.

    Output pixel i reads input pixel ``floor(i * in / out)`` (no half-pixel
    offset). For an exact 2x this is plain repetition (each pixel twice); for
    the odd sizes of ResNet's ceil-mode strides (``in = ceil(out / 2)``) it is
    repetition cropped to ``out``, which is what the FPN top-down path needs.

    Args:
        features: [B, h, w, C] any dtype.
        height, width: output size (ints or scalar int tensors).
    Returns:
        [B, height, width, C], dtype of `features`.
    """
    shape = ops.shape(features)
    rows = (ops.arange(height, dtype="int32") * shape[1]) // height
    cols = (ops.arange(width, dtype="int32") * shape[2]) // width
    return ops.take(ops.take(features, rows, axis=1), cols, axis=2)


def _parse_levels(structure, min_level, what):
    """Returns (levels, keys) of a pyramid dict or list, finest first."""
    if isinstance(structure, dict):
        levels, keys = [], []
        for key in structure:
            match = re.fullmatch(r"[A-Za-z]*(\d+)", str(key))
            if match is None:
                raise ValueError(
                    f"FeaturePyramid {what} keys must name levels like 'C2'..'C5' or "
                    f"'P2'..'P5'; received key {key!r}."
                )
            levels.append(int(match.group(1)))
            keys.append(key)
        order = sorted(range(len(levels)), key=levels.__getitem__)
        levels = [levels[i] for i in order]
        keys = [keys[i] for i in order]
    elif isinstance(structure, (list, tuple)):
        levels = list(range(min_level, min_level + len(structure)))
        keys = list(range(len(structure)))
    else:
        raise ValueError(
            f"FeaturePyramid {what} must be a dict {{'C2': ..., 'C5': ...}} or a list "
            f"of [B, H, W, C] maps (finest first); received {type(structure).__name__}."
        )
    if len(levels) < 1 or levels != list(range(levels[0], levels[0] + len(levels))):
        raise ValueError(
            f"FeaturePyramid needs consecutive levels (each map half the size of the "
            f"previous one); received levels {levels}."
        )
    return levels, keys


@keras.saving.register_keras_serializable(package="segzoo")
class FeaturePyramid(keras.layers.Layer):
    """FPN neck: ``{"C2".."C5"}`` (or a list) -> ``{"P2".."P5", "P6"}``.

    For levels l = top..bottom (coarse to fine):
    ``inner_top = lateral_top(C_top)``;
    ``inner_l = lateral_l(C_l) + nearest_resize(inner_{l+1}, size of C_l)``;
    ``P_l = output_l(inner_l)``; with `extra_pool_level`,
    ``P_{top+1} = P_top[:, ::2, ::2]`` (max pool, kernel 1, stride 2).
    The top-down upsampling is nearest 2x, cropped when a level is odd-sized
    (``floor(i * h / H)``, torch's nearest rule; see `nearest_resize`).

    Args:
        num_channels: channels of every output level (256 in the paper).
        extra_pool_level: add P_{top+1} by stride-2 subsampling of P_top.
        min_level: level of the first map when the input is a list
            (dict inputs carry their level in the key: "C2" -> 2).
        kernel_initializer: for all convs. Default is torchvision's
            ``kaiming_uniform_(a=1)``: uniform in +-sqrt(3 / fan_in), i.e.
            ``VarianceScaling(1.0, "fan_in", "uniform")``; biases start at 0.
        kernel_regularizer: optional regularizer for the conv kernels.

    Call:
        inputs: dict level-name -> [B, H_l, W_l, C_l] (keys like "C2" or "P2",
            level l at stride 2**l, ``H_l = ceil(H_{l-1} / 2)``), or a list of
            such maps, finest first. Channels may differ per level.
    Returns:
        dict ``{"P<l>": [B, H_l, W_l, num_channels]}`` for every input level,
        plus ``"P<top+1>"`` of size ``ceil(H_top / 2)`` when `extra_pool_level`.
    """

    def __init__(
        self,
        num_channels=256,
        extra_pool_level=True,
        min_level=2,
        kernel_initializer=None,
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"`num_channels` must be a positive int; received {num_channels!r}.")
        self.num_channels = num_channels
        self.extra_pool_level = bool(extra_pool_level)
        self.min_level = int(min_level)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.VarianceScaling(
                scale=1.0, mode="fan_in", distribution="uniform")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.lateral_convs = []
        self.output_convs = []

    def _conv(self, kernel_size, name):
        return keras.layers.Conv2D(
            self.num_channels,
            kernel_size,
            padding="same",
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)),
            bias_initializer="zeros",
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        levels, keys = _parse_levels(input_shape, self.min_level, "input")
        self._levels = levels
        for level, key in zip(levels, keys, strict=True):
            shape = input_shape[key]
            lateral = self._conv(1, f"lateral_{level}")
            lateral.build(shape)
            output = self._conv(3, f"output_{level}")
            output.build(tuple(shape[:-1]) + (self.num_channels,))
            self.lateral_convs.append(lateral)
            self.output_convs.append(output)
        self.built = True

    def call(self, inputs):
        levels, keys = _parse_levels(inputs, self.min_level, "input")
        if levels != self._levels:
            raise ValueError(
                f"FeaturePyramid was built for levels {self._levels}; called with {levels}."
            )
        features = [inputs[key] for key in keys]
        inner = self.lateral_convs[-1](features[-1])
        outputs = {levels[-1]: self.output_convs[-1](inner)}
        for i in range(len(levels) - 2, -1, -1):
            lateral = self.lateral_convs[i](features[i])
            shape = ops.shape(lateral)
            inner = lateral + nearest_resize(inner, shape[1], shape[2])
            outputs[levels[i]] = self.output_convs[i](inner)
        if self.extra_pool_level:
            # max_pool2d(kernel_size=1, stride=2, padding=0) == subsampling.
            outputs[levels[-1] + 1] = outputs[levels[-1]][:, ::2, ::2, :]
        return {f"P{level}": outputs[level] for level in sorted(outputs)}

    def compute_output_shape(self, input_shape):
        levels, keys = _parse_levels(input_shape, self.min_level, "input")
        out = {}
        for level, key in zip(levels, keys, strict=True):
            shape = tuple(input_shape[key])
            out[f"P{level}"] = shape[:-1] + (self.num_channels,)
        if self.extra_pool_level:
            batch, height, width, _ = input_shape[keys[-1]]
            half = [None if s is None else (s + 1) // 2 for s in (height, width)]
            out[f"P{levels[-1] + 1}"] = (batch, *half, self.num_channels)
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "num_channels": self.num_channels,
            "extra_pool_level": self.extra_pool_level,
            "min_level": self.min_level,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None,
        }
