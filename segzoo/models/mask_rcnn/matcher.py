"""IoU matching of predictions (anchors, proposals) to ground-truth boxes.

torchvision's `Matcher` on padded batches: each prediction takes the ground
truth of highest IoU; IoU >= high is a foreground match, IoU < low is
background, in between is ignored. With `allow_low_quality_matches` a
prediction that is the best match of some ground truth (ties included)
becomes foreground even below `high` (the RPN's rule that every object gets
an anchor). Padding ground-truth rows never match anything; with no valid
ground truth every prediction is background.

One deliberate difference: a ground truth whose best IoU is 0 (it overlaps no
prediction at all) promotes nothing, where torchvision would promote every
prediction with IoU 0 to it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

FOREGROUND = 1
BACKGROUND = 0
IGNORE = -1


@keras.saving.register_keras_serializable(package="segzoo")
class Matcher:
    """Assigns ground truth to predictions by IoU.

    Args:
        high_threshold: IoU >= this is foreground.
        low_threshold: IoU < this is background; between the two is ignored.
        allow_low_quality_matches: see the module docstring.
    """

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False):
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher: low_threshold={low_threshold} must be <= high_threshold={high_threshold}"
            )
        self.high_threshold = float(high_threshold)
        self.low_threshold = float(low_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def __call__(self, iou, gt_valid):
        """Matches.

        Args:
            iou: float32 `[B, M, N]`, IoU of M ground-truth boxes with N predictions.
            gt_valid: bool `[B, M]`, False for padding rows.
        Returns:
            `(matched_index, labels)`: int32 `[B, N]` index of the matched ground
            truth (0 where the label is not foreground; always a valid index
            when M > 0) and int32 `[B, N]` labels 1 foreground, 0 background,
            -1 ignore.
        """
        iou = tf.where(gt_valid[:, :, None], tf.cast(iou, tf.float32), -1.0)
        num_gt = tf.shape(iou)[1]
        # Pad one never-matching row so reductions over M = 0 are defined.
        iou = tf.pad(iou, [[0, 0], [0, 1], [0, 0]], constant_values=-1.0)
        matched_vals = tf.reduce_max(iou, axis=1)
        all_matches = tf.cast(tf.argmax(iou, axis=1), tf.int32)
        labels = tf.where(
            matched_vals >= self.high_threshold,
            FOREGROUND,
            tf.where(matched_vals < self.low_threshold, BACKGROUND, IGNORE),
        )
        if self.allow_low_quality_matches:
            highest = tf.reduce_max(iou, axis=2, keepdims=True)  # [B, M+1, 1]
            is_best = tf.logical_and(tf.equal(iou, highest), highest > 0.0)
            promoted = tf.reduce_any(is_best, axis=1)
            labels = tf.where(promoted, FOREGROUND, labels)
        labels = tf.cast(labels, tf.int32)
        matched_index = tf.where(labels == FOREGROUND, all_matches, 0)
        matched_index = tf.minimum(matched_index, tf.maximum(num_gt - 1, 0))
        return matched_index, labels

    def get_config(self):
        return {
            "high_threshold": self.high_threshold,
            "low_threshold": self.low_threshold,
            "allow_low_quality_matches": self.allow_low_quality_matches,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
