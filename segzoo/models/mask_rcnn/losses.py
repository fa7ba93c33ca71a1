"""Mask R-CNN losses on padded, sampled targets (float32 throughout).

Normalisation follows torchvision: the RPN and box regression losses are sums
over positives divided by the number of sampled elements (all images of the
batch together), the classification losses are means over sampled elements,
the mask loss is a mean over the pixels of positive RoIs. A batch with no
positive RoI has mask loss 0 (not NaN), and any batch with nothing sampled
gives 0 for every loss.
"""

from __future__ import annotations

import tensorflow as tf


def smooth_l1(x, beta):
    """Elementwise smooth L1: 0.5 x^2 / beta where |x| < beta, else |x| - 0.5 beta (beta 0: L1)."""
    absolute = tf.abs(x)
    if beta <= 0:
        return absolute
    return tf.where(absolute < beta, 0.5 * tf.square(x) / beta, absolute - 0.5 * beta)


def _count(mask):
    return tf.maximum(tf.reduce_sum(tf.cast(mask, tf.float32)), 1.0)


def rpn_objectness_loss(logits, labels, valid):
    """Binary cross-entropy with logits, mean over sampled anchors.

    Args: logits float `[B, S]`, labels float32 `[B, S]` (1 / 0), valid bool `[B, S]`.
    """
    loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.where(valid, loss, 0.0)) / _count(valid)


def rpn_box_loss(deltas, targets, positive, valid, beta=1.0 / 9):
    """Smooth L1 over positive anchors' (dx, dy, dw, dh), divided by the sampled count.

    Args: deltas / targets float `[B, S, 4]`, positive / valid bool `[B, S]`.
    """
    loss = tf.reduce_sum(smooth_l1(tf.cast(deltas, tf.float32) - targets, beta), axis=-1)
    return tf.reduce_sum(tf.where(positive, loss, 0.0)) / _count(valid)


def box_class_loss(logits, labels, valid):
    """Softmax cross-entropy over K + 1 classes, mean over sampled RoIs.

    Args: logits float `[B, R, K + 1]`, labels int32 `[B, R]`, valid bool `[B, R]`.
    """
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.where(valid, loss, 0.0)) / _count(valid)


def box_regression_loss(deltas, labels, targets, positive, valid, beta=1.0):
    """Smooth L1 on the GT class's deltas of positive RoIs, divided by the sampled count.

    Args: deltas float `[B, R, K + 1, 4]`, labels int32 `[B, R]`, targets float32
    `[B, R, 4]`, positive / valid bool `[B, R]`.
    """
    class_deltas = tf.gather(tf.cast(deltas, tf.float32), labels, batch_dims=2)
    loss = tf.reduce_sum(smooth_l1(class_deltas - targets, beta), axis=-1)
    return tf.reduce_sum(tf.where(positive, loss, 0.0)) / _count(valid)


def mask_loss(logits, targets, labels, positive, mode="sigmoid", class_agnostic=False):
    """Mask loss on positive RoIs.

    Args:
        logits: float `[B, P, S, S, C]`; C = K + 1, or 1 when class-agnostic.
        targets: float32 `[B, P, S, S]` in [0, 1] (RoIAligned GT masks).
        labels: int32 `[B, P]` GT classes (1..K) of the RoIs.
        positive: bool `[B, P]`.
        mode: "sigmoid": binary cross-entropy on the GT class's channel only
            (channel 0 when class-agnostic), mean over the positives' pixels.
            "softmax": the seed's ablation, softmax over the K + 1 channels
            per pixel, target = the GT class where the target mask >= 0.5 and
            background (channel 0) elsewhere; mean over the positives' pixels.
    Returns:
        float32 scalar; 0 when there is no positive RoI.
    """
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    pixels = tf.cast(tf.shape(targets)[2] * tf.shape(targets)[3], tf.float32)
    denominator = _count(positive) * pixels
    weights = tf.cast(positive, tf.float32)[:, :, None, None]
    if mode == "sigmoid":
        channel = tf.zeros_like(labels) if class_agnostic else labels
        selected = tf.gather(tf.transpose(logits, [0, 1, 4, 2, 3]), channel, batch_dims=2)
        loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=selected)
    elif mode == "softmax":
        pixel_labels = tf.where(targets >= 0.5, labels[:, :, None, None], 0)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pixel_labels, logits=logits)
    else:
        raise ValueError(f"mask_loss mode must be 'sigmoid' or 'softmax', got {mode!r}")
    return tf.reduce_sum(loss * weights) / denominator
