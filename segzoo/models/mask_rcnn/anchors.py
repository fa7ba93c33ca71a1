"""Anchor generation for the FPN levels (torchvision's AnchorGenerator conventions).

One anchor size a level (32, 64, 128, 256, 512 for P2..P6) and the aspect
ratios 0.5, 1, 2 (ratio = height / width). The cell anchors of a level are

    h_ratio = sqrt(ratio), w_ratio = 1 / h_ratio
    ws = w_ratio * size, hs = h_ratio * size            (ratio-major, size-minor)
    cell = round([-ws, -hs, ws, hs] / 2)                 (round half to even)

so size 32 gives [-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23].
They are centred on the top-left corner of each feature cell: the anchors of
cell (i, j) are `cell + [j*sx, i*sy, j*sx, i*sy]`, listed row-major over
cells, then over the cell anchors (the order the RPN head's outputs are
flattened in). As in torchvision the stride of a level is
`image_size // feature_size` in each axis (exactly 2**level for images padded
to a multiple of 32, except P6 when H/32 or W/32 is odd).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def cell_anchors(sizes, aspect_ratios) -> np.ndarray:
    """float32 `[len(ratios) * len(sizes), 4]` xyxy anchors centred on 0, rounded as torchvision."""
    scales = np.asarray(sizes, np.float32)
    ratios = np.asarray(aspect_ratios, np.float32)
    h_ratios = np.sqrt(ratios).astype(np.float32)
    w_ratios = (np.float32(1.0) / h_ratios).astype(np.float32)
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    base = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2.0)
    return np.round(base).astype(np.float32)  # numpy rounds half to even, like torch.round


@keras.saving.register_keras_serializable(package="segzoo")
class AnchorGenerator:
    """Anchors for a list of feature maps.

    Args:
        sizes: one tuple of anchor sizes (pixels, sqrt of area) per level.
        aspect_ratios: one tuple of height/width ratios per level (or one
            tuple used for every level).
    """

    def __init__(self, sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),)):
        sizes = [tuple(float(s) for s in level) for level in sizes]
        aspect_ratios = [tuple(float(r) for r in level) for level in aspect_ratios]
        if len(aspect_ratios) == 1 and len(sizes) > 1:
            aspect_ratios = aspect_ratios * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(
                f"AnchorGenerator: aspect_ratios has {len(aspect_ratios)} levels but sizes has "
                f"{len(sizes)}; give one tuple per level or a single tuple for all levels."
            )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(sizes, aspect_ratios, strict=True)]

    @property
    def num_levels(self) -> int:
        return len(self.sizes)

    def num_anchors_per_location(self) -> list[int]:
        return [len(c) for c in self.cell_anchors]

    def __call__(self, image_shape, feature_shapes):
        """Anchors of every level.

        Args:
            image_shape: (height, width) of the padded network input, ints or
                int32 scalar tensors.
            feature_shapes: one (height, width) per level.
        Returns:
            list of float32 `[H_l * W_l * A_l, 4]` xyxy anchors in input pixels.
        """
        if len(feature_shapes) != self.num_levels:
            raise ValueError(
                f"AnchorGenerator has {self.num_levels} levels of sizes but got "
                f"{len(feature_shapes)} feature maps"
            )
        image_h = tf.cast(image_shape[0], tf.int32)
        image_w = tf.cast(image_shape[1], tf.int32)
        anchors = []
        for (feat_h, feat_w), cells in zip(feature_shapes, self.cell_anchors, strict=True):
            feat_h = tf.cast(feat_h, tf.int32)
            feat_w = tf.cast(feat_w, tf.int32)
            stride_h = tf.cast(image_h // feat_h, tf.float32)
            stride_w = tf.cast(image_w // feat_w, tf.float32)
            shifts_x = tf.cast(tf.range(feat_w), tf.float32) * stride_w
            shifts_y = tf.cast(tf.range(feat_h), tf.float32) * stride_h
            shift_y, shift_x = tf.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x = tf.reshape(shift_x, [-1])
            shift_y = tf.reshape(shift_y, [-1])
            shifts = tf.stack([shift_x, shift_y, shift_x, shift_y], axis=1)
            level = shifts[:, None, :] + tf.constant(cells)[None, :, :]
            anchors.append(tf.reshape(level, [-1, 4]))
        return anchors

    def get_config(self):
        return {
            "sizes": [list(s) for s in self.sizes],
            "aspect_ratios": [list(r) for r in self.aspect_ratios],
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
