"""Box regression encoding (R-CNN parameterisation, torchvision's BoxCoder).

For a reference box (anchor or proposal) of width w, height h and centre
(cx, cy) and a target box (w*, h*, cx*, cy*), with weights (wx, wy, ww, wh):

    dx = wx * (cx* - cx) / w      dw = ww * log(w* / w)
    dy = wy * (cy* - cy) / h      dh = wh * log(h* / h)

Widths are `x2 - x1` (no "+1"). Decoding clamps dw, dh at
`log(1000 / 16)` before `exp`, so a wild prediction cannot overflow. The RPN
uses weights (1, 1, 1, 1), the box head (10, 10, 5, 5).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


@keras.saving.register_keras_serializable(package="segzoo")
class BoxCoder:
    """Encodes boxes against reference boxes and decodes deltas back.

    Args:
        weights: (wx, wy, ww, wh) multipliers of the deltas.
        scale_clamp: upper bound of dw and dh before `exp` when decoding.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp=BBOX_XFORM_CLIP):
        if len(weights) != 4:
            raise ValueError(f"BoxCoder weights must have 4 entries (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def encode(self, boxes, reference_boxes):
        """Deltas float32 `[..., 4]` (dx, dy, dw, dh) taking `reference_boxes` to `boxes`.

        Both are float32 `[..., 4]` xyxy pixels with positive sizes.
        """
        boxes = tf.cast(boxes, tf.float32)
        reference_boxes = tf.cast(reference_boxes, tf.float32)
        wx, wy, ww, wh = self.weights
        ref_w = reference_boxes[..., 2] - reference_boxes[..., 0]
        ref_h = reference_boxes[..., 3] - reference_boxes[..., 1]
        ref_x = reference_boxes[..., 0] + 0.5 * ref_w
        ref_y = reference_boxes[..., 1] + 0.5 * ref_h
        gt_w = boxes[..., 2] - boxes[..., 0]
        gt_h = boxes[..., 3] - boxes[..., 1]
        gt_x = boxes[..., 0] + 0.5 * gt_w
        gt_y = boxes[..., 1] + 0.5 * gt_h
        dx = wx * (gt_x - ref_x) / ref_w
        dy = wy * (gt_y - ref_y) / ref_h
        dw = ww * tf.math.log(gt_w / ref_w)
        dh = wh * tf.math.log(gt_h / ref_h)
        return tf.stack([dx, dy, dw, dh], axis=-1)

    def decode(self, deltas, reference_boxes):
        """Boxes float32 `[..., 4]` xyxy from deltas `[..., 4]` and reference boxes `[..., 4]`."""
        deltas = tf.cast(deltas, tf.float32)
        reference_boxes = tf.cast(reference_boxes, tf.float32)
        wx, wy, ww, wh = self.weights
        widths = reference_boxes[..., 2] - reference_boxes[..., 0]
        heights = reference_boxes[..., 3] - reference_boxes[..., 1]
        ctr_x = reference_boxes[..., 0] + 0.5 * widths
        ctr_y = reference_boxes[..., 1] + 0.5 * heights
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = tf.minimum(deltas[..., 2] / ww, self.scale_clamp)
        dh = tf.minimum(deltas[..., 3] / wh, self.scale_clamp)
        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        pred_w = tf.exp(dw) * widths
        pred_h = tf.exp(dh) * heights
        return tf.stack(
            [
                pred_ctr_x - 0.5 * pred_w,
                pred_ctr_y - 0.5 * pred_h,
                pred_ctr_x + 0.5 * pred_w,
                pred_ctr_y + 0.5 * pred_h,
            ],
            axis=-1,
        )

    def get_config(self):
        return {"weights": list(self.weights), "scale_clamp": self.scale_clamp}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
