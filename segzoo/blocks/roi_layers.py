"""Keras layers around the RoI ops of `segzoo.blocks.roi` (weightless, serialisable).

Every layer is called as `layer(features, boxes, box_indices)`:

- features: `[N, H, W, C]` (float32 / float16 / bfloat16); for
  `MultiLevelRoIPooler` a dict of such maps keyed by level name ("P2", ...).
- boxes: `[K, 4]` float32 `[x1, y1, x2, y2]` in input-image pixels.
- box_indices: `[K]` int32, the image of each box.
- returns `[K, out_h, out_w, C]` in the features' dtype, in input order.

Boxes are never autocast (a float16 policy would round pixel coordinates), so
the layers are built with `autocast=False`; the ops compute in float32 and
return the features' dtype.
"""

from __future__ import annotations

import keras

from segzoo.arguments import size_pair
from segzoo.blocks import roi


def _output_size(output_size):
    out_h, out_w = size_pair(output_size, "output_size")
    return [out_h, out_w]


class _RoILayer(keras.layers.Layer):
    """Shared config and shape logic: `output_size` plus op keyword arguments."""

    def __init__(self, output_size, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = _output_size(output_size)

    def compute_output_shape(self, features_shape, boxes_shape, box_indices_shape=None):
        return (boxes_shape[0], *self.output_size, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["output_size"] = list(self.output_size)
        return config


class _ScaledRoILayer(_RoILayer):
    """A `_RoILayer` over one feature map at `spatial_scale`: `_op(features, boxes,
    box_indices, output_size, spatial_scale)` is the `segzoo.blocks.roi` op it wraps."""

    _op = None

    def __init__(self, output_size, spatial_scale=1.0, **kwargs):
        super().__init__(output_size, **kwargs)
        self.spatial_scale = float(spatial_scale)

    def call(self, features, boxes, box_indices):
        return self._op(features, boxes, box_indices, self.output_size, self.spatial_scale)

    def get_config(self):
        config = super().get_config()
        config.update(spatial_scale=self.spatial_scale)
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class RoIAlign(_ScaledRoILayer):
    """`segzoo.blocks.roi_align` as a layer (torchvision / detectron2 RoIAlign on NHWC).

    Args:
        output_size: int or (out_h, out_w).
        spatial_scale: feature pixels per input pixel (1 / stride).
        sampling_ratio: samples per bin side; <= 0 is adaptive (per box).
        aligned: detectron2's half-pixel shift (True) or the original op (False).
    """

    def __init__(self, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True,
                 **kwargs):
        super().__init__(output_size, spatial_scale, **kwargs)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def call(self, features, boxes, box_indices):
        return roi.roi_align(features, boxes, box_indices, self.output_size,
                             self.spatial_scale, self.sampling_ratio, self.aligned)

    def get_config(self):
        config = super().get_config()
        config.update(sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class RoIPool(_ScaledRoILayer):
    """`segzoo.blocks.roi_pool` as a layer (torchvision RoIPool: quantised box, max per bin).

    Args:
        output_size: int or (out_h, out_w).
        spatial_scale: feature pixels per input pixel (1 / stride).
    """

    _op = staticmethod(roi.roi_pool)


@keras.saving.register_keras_serializable(package="segzoo")
class RoIWarp(_ScaledRoILayer):
    """`segzoo.blocks.roi_warp` as a layer (quantise, bilinear warp to 2x, 2x2 max-pool).

    Args:
        output_size: int or (out_h, out_w).
        spatial_scale: feature pixels per input pixel (1 / stride).
    """

    _op = staticmethod(roi.roi_warp)


def level_of_name(name) -> int:
    """The pyramid level named by a feature key: "P2" -> 2 (stride 2**2 = 4); ints pass through."""
    digits = "".join(ch for ch in str(name) if ch.isdigit())
    if not digits:
        raise ValueError(f"a pyramid level name must contain its level number (e.g. 'P2'); received {name!r}.")
    return int(digits)


@keras.saving.register_keras_serializable(package="segzoo")
class MultiLevelRoIPooler(keras.layers.Layer):
    """RoI features from a feature pyramid, each box pooled on its LevelMapper level.

    torchvision's `MultiScaleRoIAlign`: the pyramid is a dict and the levels
    used are chosen by NAME (`levels`, e.g. "P2".."P5"; other keys such as
    "P6" are ignored); level "Pl" has stride 2**l. A box of area A goes to
    level `floor(canonical_level + log2(sqrt(A) / canonical_size) + 1e-6)`
    clamped to the named levels (`segzoo.blocks.multilevel_roi_pooling`).

    Call:
        features: dict name -> `[N, H_l, W_l, C]` (float32 / float16 / bfloat16).
        boxes: float32 xyxy input pixels, either `[K, 4]` with `box_indices`
            int32 `[K]` (the image of each box), or batched `[B, R, 4]` with
            `box_indices=None` (box r of image b reads image b).
    Returns:
        `[K, out_h, out_w, C]` or `[B, R, out_h, out_w, C]`, in the features'
        dtype, in input order.

    Args:
        output_size: int or (out_h, out_w) (7 for the box head, 14 for masks).
        levels: names of consecutive pyramid levels, finest first.
        method: "align" (RoIAlign), "pool" (RoIPool) or "warp" (RoIWarp).
        sampling_ratio: RoIAlign samples per bin side; <= 0 is adaptive.
        aligned: RoIAlign's half-pixel shift (detectron2, True) or the
            original op (False: torchvision's MultiScaleRoIAlign, for weight imports).
        canonical_size, canonical_level: the level mapping (224 -> level 4).
    """

    def __init__(self, output_size=7, levels=("P2", "P3", "P4", "P5"), method="align", sampling_ratio=-1,
                 aligned=True, canonical_size=224, canonical_level=4, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if method not in ("align", "pool", "warp"):
            raise ValueError(f"method must be 'align', 'pool' or 'warp'; received {method!r}.")
        self.output_size = _output_size(output_size)
        self.levels = tuple(str(name) for name in levels)
        numbers = [level_of_name(name) for name in self.levels]
        if not numbers or numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise ValueError(f"levels must name consecutive pyramid levels, finest first (e.g. "
                             f"('P2', 'P3', 'P4', 'P5')); received {levels!r}.")
        self.min_level = numbers[0]
        self.method = method
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)

    def _level_maps(self, features):
        if not isinstance(features, dict):
            raise ValueError("MultiLevelRoIPooler reads the pyramid by level name: features must be a dict "
                             f"with keys {list(self.levels)}; received {type(features).__name__}.")
        missing = [name for name in self.levels if name not in features]
        if missing:
            raise ValueError(f"feature pyramid lacks levels {missing}; it has {sorted(features)}.")
        return [features[name] for name in self.levels]

    def call(self, features, boxes, box_indices=None):
        maps = self._level_maps(features)
        batched = box_indices is None
        if batched:
            shape = keras.ops.shape(boxes)
            batch, count = shape[0], shape[1]
            flat = keras.ops.reshape(keras.ops.cast(boxes, "float32"), (-1, 4))
            box_indices = keras.ops.repeat(keras.ops.arange(batch, dtype="int32"), count)
        else:
            flat = boxes
        pooled = roi.multilevel_roi_pooling(
            maps, flat, box_indices, self.output_size, self.method, self.min_level,
            self.sampling_ratio, self.aligned, self.canonical_size, self.canonical_level)
        if batched:
            pooled = keras.ops.reshape(pooled, (batch, count, *self.output_size, pooled.shape[-1]))
        return pooled

    def compute_output_shape(self, features_shape, boxes_shape, box_indices_shape=None):
        channels = features_shape[self.levels[0]][-1]
        leading = tuple(boxes_shape[:-1])
        return (*leading, *self.output_size, channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            output_size=list(self.output_size), levels=list(self.levels), method=self.method,
            sampling_ratio=self.sampling_ratio, aligned=self.aligned, canonical_size=self.canonical_size,
            canonical_level=self.canonical_level,
        )
        return config
