"""A stand-in detector with keypoint_rcnn / ms_rcnn's extra outputs, for fast tests."""

from __future__ import annotations

import keras
import tensorflow as tf

from tests.export.tiny_models import TinyDetector

NAMES = ("nose", "left_eye", "right_eye")


@keras.saving.register_keras_serializable(package="segzoo_tests", name="TinyKeypointDetector")
class TinyKeypointDetector(TinyDetector):
    """TinyDetector plus keypoint_rcnn / ms_rcnn outputs: keypoints [B, N, 3, 3] at the box
    centre and its top corners (score = the box score), keypoint_scores, and mask_scores =
    scores / 2, zero on the padding row; no masks output (as keypoint_rcnn)."""

    has_masks = False
    has_keypoints = True
    has_mask_scores = True
    num_keypoints = 3
    keypoint_names = NAMES
    keypoint_skeleton = ((0, 1), (0, 2))

    def call(self, images, training=False):
        out = dict(super().call(images, training=training))
        boxes, scores = out.pop("boxes"), out["scores"]
        del out["masks"]
        x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
        xy = tf.stack([tf.stack([(x1 + x2) / 2, (y1 + y2) / 2], -1),
                       tf.stack([x1, y1], -1), tf.stack([x2, y1], -1)], axis=2)  # [B, N, 3, 2]
        keypoint_scores = tf.tile(scores[..., None], [1, 1, 3])
        valid = tf.cast(scores > 0, tf.float32)[..., None, None]
        keypoints = tf.concat([xy, keypoint_scores[..., None]], -1) * valid
        return {**out, "boxes": boxes, "keypoints": keypoints,
                "keypoint_scores": keypoint_scores, "mask_scores": scores / 2}
