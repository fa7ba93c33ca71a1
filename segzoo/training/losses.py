"""Semantic segmentation losses that ignore a label (255 by default).

    get_loss("ce" | "dice" | "focal" | "ce+dice", ignore_label=255, class_weights=None)

Every loss takes `y_true` integer class ids [B, H, W] (or [B, H, W, 1]) in
[0, K) or `ignore_label`, and `y_pred` logits [B, H, W, K] of any float dtype
(cast to float32 first, so mixed-precision models get a float32 loss).
Ignored pixels contribute nothing and get zero gradient; a batch with no valid
pixel gives loss 0. Under tf.distribute each replica's value is divided by the
number of replicas (Keras's convention), so the all-reduced gradient is that
of the mean over the replicas.

Formulas (p = softmax(logits), y = one-hot labels, v = 1 on valid pixels, w_c
the optional class weights, sums over the batch's valid pixels i):

- ce:     sum_i w_{y_i} (-log p_{i, y_i}) / sum_i w_{y_i}   (PyTorch's weighted mean;
          w = 1: the mean over valid pixels)
- focal:  the same weighted mean of -(1 - p_{i, y_i})^gamma log p_{i, y_i}
          (Lin et al. 2017, gamma = 2)
- dice:   1 - mean_c (2 sum_i p_ic y_ic + s) / (sum_i p_ic + sum_i y_ic + s) over the
          classes c (background 0 left out unless include_background), the batch
          as one volume (nnU-Net's batch Dice, smooth s = 1e-5)
- ce+dice: ce + dice (nnU-Net's default loss).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.conventions import IGNORE_LABEL
from segzoo.errors import ArgumentError, arg

LOSSES = ("ce", "dice", "focal", "ce+dice")


def _labels_and_valid(y_true, logits, ignore_label):
    labels = tf.cast(y_true, tf.int32)
    if labels.shape.rank == logits.shape.rank:
        labels = tf.squeeze(labels, axis=-1)
    valid = tf.not_equal(labels, ignore_label)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    return safe_labels, tf.cast(valid, tf.float32)


def _per_replica(loss):
    # As Keras's own mean losses do: under tf.distribute each replica's loss is
    # divided by the replica count, so the summed gradients are the mean's.
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / float(replicas) if replicas > 1 else loss


def _class_weights(class_weights):
    return None if class_weights is None else [float(w) for w in class_weights]


@keras.saving.register_keras_serializable(package="segzoo")
class SparseSegmentationCrossEntropy(keras.losses.Loss):
    """Softmax cross-entropy per pixel; pixels labelled `ignore_label` contribute nothing.

    The loss is the (class-weighted) sum over non-ignored pixels divided by their
    (weighted) number (`normalize=True`, the default), or divided by the batch size
    only (`normalize=False`: the Caffe FCN reference's unnormalised loss, which is
    why its learning rate is 1e-10). See the module doc for shapes and conventions.

    Args:
        ignore_label: label value to ignore (255 = VOC void / border).
        normalize: mean over valid pixels (True) or per-image sum (False).
        class_weights: None or K per-class weights w_c (module doc).
        name: loss name.
    """

    def __init__(self, ignore_label: int = IGNORE_LABEL, normalize: bool = True, class_weights=None,
                 name: str = "segmentation_cross_entropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        self.ignore_label = int(ignore_label)
        self.normalize = bool(normalize)
        self.class_weights = _class_weights(class_weights)

    def pixel_terms(self, labels, logits):
        """Per-pixel losses float32 [B, H, W] before weighting (labels already safe)."""
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)

    def pixel_losses(self, y_true, y_pred):
        """Per-pixel weighted losses float32 [B, H, W] (0 where ignored) and weights
        float32 [B, H, W] (w_{y_i} on valid pixels, 0 where ignored)."""
        logits = tf.cast(y_pred, tf.float32)
        labels, valid = _labels_and_valid(y_true, logits, self.ignore_label)
        weight = valid
        if self.class_weights is not None:
            weight = valid * tf.gather(tf.constant(self.class_weights, tf.float32), labels)
        return self.pixel_terms(labels, logits) * weight, weight

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
            return _per_replica(loss)

    def get_config(self):
        return {"name": self.name, "ignore_label": self.ignore_label, "normalize": self.normalize,
                "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="segzoo")
class SparseSegmentationFocalLoss(SparseSegmentationCrossEntropy):
    """Focal loss -(1 - p_t)^gamma log p_t per pixel (Lin et al.), ignoring `ignore_label`;
    reduced as `SparseSegmentationCrossEntropy` (module doc). gamma = 0 is the CE."""

    def __init__(self, gamma: float = 2.0, ignore_label: int = IGNORE_LABEL, normalize: bool = True,
                 class_weights=None, name: str = "segmentation_focal", **kwargs):
        super().__init__(ignore_label=ignore_label, normalize=normalize,
                         class_weights=class_weights, name=name, **kwargs)
        self.gamma = float(gamma)

    def pixel_terms(self, labels, logits):
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        p_true = tf.exp(-ce)
        return tf.pow(tf.maximum(1.0 - p_true, 0.0), self.gamma) * ce

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="segzoo")
class SparseSegmentationDiceLoss(keras.losses.Loss):
    """Soft Dice loss over the batch (nnU-Net's batch Dice), ignoring `ignore_label`.

    1 - mean over classes of (2 sum p y + s) / (sum p + sum y + s), sums over the
    valid pixels of the batch (module doc). With `ce_weight > 0` the loss adds
    `ce_weight` x the mean cross-entropy ("ce+dice").

    Args:
        ignore_label: label to ignore.
        smooth: s.
        include_background: average class 0 too (nnU-Net leaves it out).
        ce_weight: weight of the added cross-entropy (0: Dice only).
        class_weights: weights of the added cross-entropy (module doc).
        name: loss name.
    """

    def __init__(self, ignore_label: int = IGNORE_LABEL, smooth: float = 1e-5,
                 include_background: bool = False, ce_weight: float = 0.0, class_weights=None,
                 name: str = "segmentation_dice", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        self.ignore_label = int(ignore_label)
        self.smooth = float(smooth)
        self.include_background = bool(include_background)
        self.ce_weight = float(ce_weight)
        self.class_weights = _class_weights(class_weights)
        self._ce = SparseSegmentationCrossEntropy(ignore_label, class_weights=class_weights)

    def dice(self, y_true, y_pred):
        """The Dice term (a float32 scalar), without the replica division."""
        logits = tf.cast(y_pred, tf.float32)
        labels, valid = _labels_and_valid(y_true, logits, self.ignore_label)
        num_classes = tf.shape(logits)[-1]
        probabilities = tf.nn.softmax(logits) * valid[..., None]
        one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32) * valid[..., None]
        axes = tf.range(tf.rank(logits) - 1)
        intersection = tf.reduce_sum(probabilities * one_hot, axis=axes)
        denominator = tf.reduce_sum(probabilities, axis=axes) + tf.reduce_sum(one_hot, axis=axes)
        scores = (2.0 * intersection + self.smooth) / tf.maximum(denominator + self.smooth, 1e-8)
        if not self.include_background:
            scores = scores[1:]
        loss = 1.0 - tf.reduce_mean(scores)
        return tf.where(tf.reduce_sum(valid) > 0, loss, 0.0)

    def call(self, y_true, y_pred):
        return self.dice(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name):
            loss = self.dice(y_true, y_pred)
            if self.ce_weight:
                ce = self._ce.pixel_losses(y_true, y_pred)
                loss = loss + self.ce_weight * tf.math.divide_no_nan(
                    tf.reduce_sum(ce[0]), tf.reduce_sum(ce[1]))
            return _per_replica(loss)

    def get_config(self):
        return {"name": self.name, "ignore_label": self.ignore_label, "smooth": self.smooth,
                "include_background": self.include_background, "ce_weight": self.ce_weight,
                "class_weights": self.class_weights}


def get_loss(name: str = "ce", *, ignore_label: int = IGNORE_LABEL, normalize: bool = True,
             class_weights=None) -> keras.losses.Loss:
    """The semantic loss called `name` (module doc): "ce", "dice", "focal" or "ce+dice".

    `normalize=False` (the per-image sum of Caffe FCN) applies to "ce" and "focal".

    Raises:
        ValueError: unknown name.
    """
    if name == "ce":
        return SparseSegmentationCrossEntropy(ignore_label, normalize, class_weights)
    if name == "focal":
        return SparseSegmentationFocalLoss(ignore_label=ignore_label, normalize=normalize,
                                           class_weights=class_weights)
    if name == "dice":
        return SparseSegmentationDiceLoss(ignore_label)
    if name == "ce+dice":
        return SparseSegmentationDiceLoss(ignore_label, ce_weight=1.0, class_weights=class_weights,
                                          name="segmentation_ce_dice")
    raise ArgumentError(f"{arg('loss', name)} is not a semantic loss; expected one of {list(LOSSES)}")
