"""Keras layers around the RoI ops of `segzoo.blocks.roi` (weightless, serialisable).

Every layer is called as `layer(features, boxes, box_indices)`:

- features: `[N, H, W, C]` (float32 / float16 / bfloat16); for
  `MultiLevelRoIAlign` a list of such maps, finest first (or a dict "P2"...).
- boxes: `[K, 4]` float32 `[x1, y1, x2, y2]` in input-image pixels.
- box_indices: `[K]` int32, the image of each box.
- returns `[K, out_h, out_w, C]` in the features' dtype, in input order.

Boxes are never autocast (a float16 policy would round pixel coordinates), so
the layers are built with `autocast=False`; the ops compute in float32 and
return the features' dtype.
"""

from __future__ import annotations

import keras

from segzoo.blocks import roi


def _output_size(output_size):
    out_h, out_w = roi._pair(output_size)
    return [out_h, out_w]


class _RoILayer(keras.layers.Layer):
    """Shared config and shape logic: `output_size` plus op keyword arguments."""

    def __init__(self, output_size, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.output_size = _output_size(output_size)

    def compute_output_shape(self, features_shape, boxes_shape, box_indices_shape=None):
        if isinstance(features_shape, dict):
            features_shape = list(features_shape.values())
        if isinstance(features_shape, (list, tuple)) and isinstance(features_shape[0], (list, tuple)):
            features_shape = features_shape[0]
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


@keras.saving.register_keras_serializable(package="segzoo")
class MultiLevelRoIAlign(_RoILayer):
    """RoI features from an FPN pyramid: each box pooled on its LevelMapper level.

    Called as `layer(features, boxes, box_indices)` with `features` a list of
    `[N, H_i, W_i, C]` maps, `features[i]` at stride `2**(min_level + i)` (or a
    dict keyed "P2", "P3", ...). See `segzoo.blocks.multilevel_roi_align`.

    Args:
        output_size: int or (out_h, out_w).
        min_level: level of `features[0]` (stride 2**min_level).
        sampling_ratio, aligned: RoIAlign options (used when pooler="align").
        canonical_size, canonical_level: FPN level mapping (224 -> level 4).
        pooler: "align" (RoIAlign, default), "pool" (RoIPool) or "warp" (RoIWarp).
    """

    def __init__(self, output_size, min_level=2, sampling_ratio=-1, aligned=True,
                 canonical_size=224, canonical_level=4, pooler="align", **kwargs):
        super().__init__(output_size, **kwargs)
        if pooler not in ("align", "pool", "warp"):
            raise ValueError(f"pooler must be 'align', 'pool' or 'warp'; received {pooler!r}.")
        self.min_level = int(min_level)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.canonical_size = float(canonical_size)
        self.canonical_level = int(canonical_level)
        self.pooler = pooler

    def call(self, features, boxes, box_indices):
        return roi.multilevel_roi_pooling(
            features, boxes, box_indices, self.output_size, self.pooler, self.min_level,
            self.sampling_ratio, self.aligned, self.canonical_size, self.canonical_level,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            min_level=self.min_level, sampling_ratio=self.sampling_ratio, aligned=self.aligned,
            canonical_size=self.canonical_size, canonical_level=self.canonical_level,
            pooler=self.pooler,
        )
        return config
