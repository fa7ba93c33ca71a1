"""Multi-level RoI feature pooling for the box and mask heads.

Each RoI is assigned an FPN level by torchvision's LevelMapper
(`floor(4 + log2(sqrt(area) / 224) + 1e-6)` clamped to P2..P5) and pooled
from that level with spatial scale 1 / 2**level. Three poolers (the seed's
ablation, `roi_pooler=`):

- "align": RoIAlign (`segzoo.blocks.multilevel_roi_align`; sampling ratio 2,
  `aligned=True` by default as detectron2 — torchvision's MultiScaleRoIAlign
  uses aligned=False, selectable for weight imports);
- "pool": RoIPool (quantised box, max per bin; `segzoo.blocks.roi_pool`);
- "warp": RoIWarp (`segzoo.blocks.roi_warp`).

All three go through `segzoo.blocks.multilevel_roi_pooling`: one pass, each RoI
pooled only on its own level.
"""

from __future__ import annotations

import keras
import tensorflow as tf

POOLERS = ("align", "warp", "pool")


@keras.saving.register_keras_serializable(package="segzoo")
class MultiLevelRoIPooler:
    """Pools `[B, R, 4]` RoIs from FPN levels into `[B * R, S, S, C]`.

    Args:
        mode: "align" | "warp" | "pool".
        output_size: S (7 for the box head, 14 for the mask head).
        sampling_ratio: RoIAlign samples per bin and axis (2), <= 0 adaptive.
        aligned: RoIAlign's half-pixel shift.
        min_level: level of `features[0]` (2).
        canonical_size / canonical_level: the LevelMapper's 224 / 4.
    """

    def __init__(self, mode="align", output_size=7, sampling_ratio=2, aligned=True, min_level=2,
                 canonical_size=224, canonical_level=4):
        if mode not in POOLERS:
            raise ValueError(f"roi_pooler must be one of {POOLERS}, got {mode!r}")
        self.mode = mode
        self.output_size = int(output_size)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)
        self.min_level = int(min_level)
        self.canonical_size = int(canonical_size)
        self.canonical_level = int(canonical_level)

    def __call__(self, features, boxes):
        """Pooled features.

        Args:
            features: list of `[B, H_l, W_l, C]`, finest (P2) first, stride 2**(min_level + i).
            boxes: float32 `[B, R, 4]` xyxy input pixels.
        Returns:
            `[B * R, S, S, C]` in the features' dtype, RoI-major per image.
        """
        from segzoo.blocks import roi as roi_ops

        batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        indices = tf.repeat(tf.range(batch, dtype=tf.int32), count)
        return roi_ops.multilevel_roi_pooling(
            features, flat, indices, self.output_size, method=self.mode,
            min_level=self.min_level, sampling_ratio=self.sampling_ratio, aligned=self.aligned,
            canonical_size=self.canonical_size, canonical_level=self.canonical_level)

    def get_config(self):
        return {
            "mode": self.mode,
            "output_size": self.output_size,
            "sampling_ratio": self.sampling_ratio,
            "aligned": self.aligned,
            "min_level": self.min_level,
            "canonical_size": self.canonical_size,
            "canonical_level": self.canonical_level,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
