"""Streaming mean IoU for `model.fit` / `model.evaluate`, ignoring a label."""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.conventions import IGNORE_LABEL


@keras.saving.register_keras_serializable(package="segzoo")
class SegmentationMeanIoU(keras.metrics.Metric):
    """Mean IoU over classes from a confusion matrix accumulated across batches.

    `y_true`: integer ids [B, H, W] (or [B, H, W, 1]); `y_pred`: logits or
    probabilities [B, H, W, K] (the arg-max is taken). Pixels labelled
    `ignore_label` are skipped. The IoU of a class absent from both labels and
    predictions is left out of the mean (FCN's nanmean), so the value matches
    `segzoo.evaluation.semantic.ConfusionMatrix` on the same pixels.

    The matrix is a float64 variable summed across replicas, so the value is the
    same under `tf.distribute` as in one process.

    Args:
        num_classes: K.
        ignore_label: label value to skip (default 255).
        name: metric name (`mean_iou` -> `val_mean_iou` in logs).
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, name: str = "mean_iou",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            aggregation="sum",
            name="confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        k = self.num_classes
        y_pred = tf.convert_to_tensor(y_pred)
        labels = tf.cast(y_true, tf.int64)
        if labels.shape.rank == y_pred.shape.rank:
            labels = tf.squeeze(labels, axis=-1)
        predictions = tf.argmax(y_pred, axis=-1, output_type=tf.int64)
        labels = tf.reshape(labels, [-1])
        predictions = tf.reshape(predictions, [-1])
        valid = (labels != self.ignore_label) & (labels >= 0) & (labels < k)
        # A weighted segment sum, not boolean_mask + bincount: static shapes, so the
        # train step also compiles with XLA (--jit-compile).
        index = tf.where(valid, labels * k + predictions, tf.zeros_like(labels))
        counts = tf.math.unsorted_segment_sum(tf.cast(valid, tf.float64), index, k * k)
        self.confusion.assign_add(tf.reshape(counts, (k, k)))

    def result(self):
        hist = tf.convert_to_tensor(self.confusion)
        diag = tf.linalg.diag_part(hist)
        union = tf.reduce_sum(hist, 0) + tf.reduce_sum(hist, 1) - diag
        present = union > 0
        iou = tf.math.divide_no_nan(diag, union)
        mean = tf.math.divide_no_nan(
            tf.reduce_sum(tf.where(present, iou, tf.zeros_like(iou))),
            tf.reduce_sum(tf.cast(present, tf.float64)),
        )
        return tf.cast(mean, tf.float32)

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_classes": self.num_classes,
                "ignore_label": self.ignore_label}
