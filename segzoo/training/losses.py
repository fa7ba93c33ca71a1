"""Pixel-wise softmax cross-entropy that ignores a label (255 by default)."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segzoo")
class SparseSegmentationCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy per pixel; pixels labelled `ignore_label` contribute nothing.

    `y_true`: integer class ids [B, H, W] (or [B, H, W, 1]) in [0, K) or
    `ignore_label`. `y_pred`: logits [B, H, W, K], any float dtype (cast to
    float32 first, so mixed-precision models get a float32 loss).

    The loss is the sum over non-ignored pixels divided by their number
    (`normalize=True`, the default), or divided by the batch size only
    (`normalize=False`: the Caffe FCN reference's unnormalised loss, which is
    why its learning rate is 1e-10). Ignored pixels get loss 0 and gradient 0.
    A batch with no valid pixel gives loss 0. Under tf.distribute each replica's
    value is divided by the number of replicas (Keras's convention), so the
    all-reduced gradient is that of the mean over the replicas.

    Args:
        ignore_label: label value to ignore (255 = VOC void / border).
        normalize: mean over valid pixels (True) or per-image sum (False).
        name: loss name.
    """

    def __init__(self, ignore_label: int = 255, normalize: bool = True,
                 name: str = "segmentation_cross_entropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        self.ignore_label = int(ignore_label)
        self.normalize = bool(normalize)

    def pixel_losses(self, y_true, y_pred):
        """Per-pixel losses float32 [B, H, W] (0 where ignored) and validity float32 [B, H, W]."""
        logits = tf.cast(y_pred, tf.float32)
        labels = tf.cast(y_true, tf.int32)
        if labels.shape.rank == logits.shape.rank:
            labels = tf.squeeze(labels, axis=-1)
        valid = tf.not_equal(labels, self.ignore_label)
        safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=logits)
        valid = tf.cast(valid, tf.float32)
        return losses * valid, valid

    def call(self, y_true, y_pred):
        return self.pixel_losses(y_true, y_pred)[0]

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            losses, valid = self.pixel_losses(y_true, y_pred)
            if sample_weight is not None:
                weight = tf.cast(sample_weight, tf.float32)
                while weight.shape.rank is not None and weight.shape.rank < losses.shape.rank:
                    weight = tf.expand_dims(weight, -1)
                losses = losses * weight
                valid = valid * weight
            total = tf.reduce_sum(losses)
            if self.normalize:
                loss = tf.math.divide_no_nan(total, tf.reduce_sum(valid))
            else:
                loss = total / tf.cast(tf.maximum(tf.shape(losses)[0], 1), tf.float32)
            # As Keras's own mean losses do: under tf.distribute each replica's loss is
            # divided by the replica count, so the summed gradients are the mean's.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            if replicas > 1:
                loss = loss / float(replicas)
            return loss

    def get_config(self):
        return {"name": self.name, "ignore_label": self.ignore_label, "normalize": self.normalize}
