"""Loss, streaming metric, LR schedule and optimizers against numpy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from segzoo.evaluation.semantic import ConfusionMatrix
from segzoo.training.losses import SparseSegmentationCrossEntropy
from segzoo.training.metrics import SegmentationMeanIoU
from segzoo.training.optimizers import build_optimizer
from segzoo.training.schedules import PolyWarmup


def numpy_ce(labels, logits, ignore=255):
    logits = logits.astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    valid = labels != ignore
    picked = np.take_along_axis(logp, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    return -(picked * valid).sum(), valid.sum()


def test_loss_matches_numpy_mean_over_valid_pixels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[0, :2] = 255
    total, count = numpy_ce(labels, logits)
    loss = SparseSegmentationCrossEntropy()(labels, logits)
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
    unnormalised = SparseSegmentationCrossEntropy(normalize=False)(labels, logits)
    assert float(unnormalised) == pytest.approx(total / 2, rel=1e-5)


def test_ignored_pixels_change_nothing_and_get_zero_gradient():
    rng = np.random.default_rng(1)
    logits = tf.Variable(rng.normal(size=(1, 4, 4, 3)).astype(np.float32))
    labels = rng.integers(0, 3, size=(1, 4, 4))
    labels[0, 0, :] = 255
    loss_fn = SparseSegmentationCrossEntropy()
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, logits)
    grad = tape.gradient(loss, logits).numpy()
    np.testing.assert_array_equal(grad[0, 0], 0.0)
    assert np.abs(grad[0, 1:]).sum() > 0
    # Changing the logits under the ignored pixels does not move the loss.
    other = logits.numpy().copy()
    other[0, 0] = 1e3 * rng.normal(size=(4, 3))
    assert float(loss_fn(labels, other)) == pytest.approx(float(loss), rel=1e-6)
    # And the loss equals the loss on the valid pixels alone.
    assert float(loss) == pytest.approx(float(loss_fn(labels[:, 1:], logits[:, 1:])), rel=1e-6)


def test_all_ignored_gives_zero_and_float16_logits_give_float32_loss():
    loss_fn = SparseSegmentationCrossEntropy()
    assert float(loss_fn(np.full((1, 2, 2), 255), np.zeros((1, 2, 2, 3), np.float32))) == 0.0
    loss = loss_fn(np.zeros((1, 2, 2), np.int32), tf.zeros((1, 2, 2, 3), tf.float16))
    assert loss.dtype == tf.float32
    assert float(loss) == pytest.approx(np.log(3.0), rel=1e-3)


def test_loss_and_metric_serialise():
    loss = SparseSegmentationCrossEntropy(ignore_label=7, normalize=False)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert again.ignore_label == 7 and again.normalize is False
    metric = SegmentationMeanIoU(num_classes=5, ignore_label=9)
    again = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert again.num_classes == 5 and again.ignore_label == 9


def test_streaming_mean_iou_equals_confusion_matrix():
    rng = np.random.default_rng(2)
    metric = SegmentationMeanIoU(num_classes=4)
    cm = ConfusionMatrix(4)
    for _ in range(3):
        labels = rng.integers(0, 3, size=(2, 6, 7))  # class 3 never labelled
        labels[rng.random(labels.shape) < 0.2] = 255
        logits = rng.normal(size=(2, 6, 7, 4)).astype(np.float32)
        logits[..., 3] -= 10  # ... and never predicted -> excluded from the mean
        metric.update_state(labels, logits)
        cm.update(labels, logits.argmax(-1))
    assert float(metric.result()) == pytest.approx(cm.metrics()["mean_iou"], rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_poly_warmup_values():
    schedule = PolyWarmup(0.1, decay_steps=100, warmup_steps=10, power=0.9, warmup_factor=0.1)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(5)) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(55)) == pytest.approx(0.1 * 0.5**0.9, rel=1e-5)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(1000)) == pytest.approx(0.0, abs=1e-9)
    no_warm = PolyWarmup(1.0, decay_steps=4, power=1.0)
    np.testing.assert_allclose([float(no_warm(s)) for s in range(5)], [1, 0.75, 0.5, 0.25, 0], atol=1e-6)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(again(5)) == pytest.approx(float(schedule(5)))
    with pytest.raises(ValueError, match="warmup_steps"):
        PolyWarmup(0.1, decay_steps=5, warmup_steps=6)


def test_sgd_weight_decay_is_decoupled_and_skips_bias():
    kernel = keras.Variable(np.array([2.0], np.float32), name="kernel")
    bias = keras.Variable(np.array([2.0], np.float32), name="bias")
    opt = build_optimizer("sgd", 0.1, momentum=0.9, weight_decay=0.5)
    opt.apply_gradients([(tf.constant([1.0]), kernel), (tf.constant([1.0]), bias)])
    # decay: w - lr * wd * w = 2 - 0.1, then gradient step: - lr * g = -0.1
    assert float(kernel.numpy()[0]) == pytest.approx(2.0 - 0.1 - 0.1)
    assert float(bias.numpy()[0]) == pytest.approx(2.0 - 0.1)
    assert isinstance(build_optimizer("adamw", 1e-3, weight_decay=1e-4), keras.optimizers.AdamW)
    assert isinstance(build_optimizer("adam", 1e-3), keras.optimizers.Adam)
    with pytest.raises(ValueError, match="rmsprop"):
        build_optimizer("rmsprop", 1e-3)


# --- --loss ce|dice|focal|ce+dice against their reference formulas ----------------------------
def _numpy_softmax(logits):
    logits = logits.astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_weighted_ce(labels, logits, weights=None, gamma=0.0, ignore=255):
    """sum_i w_{y_i} (1 - p_t)^gamma (-log p_t) / sum_i w_{y_i} over valid pixels."""
    p = _numpy_softmax(logits)
    valid = labels != ignore
    safe = np.where(valid, labels, 0)
    p_t = np.take_along_axis(p, safe[..., None], -1)[..., 0]
    w = np.ones(logits.shape[-1]) if weights is None else np.asarray(weights, np.float64)
    w_i = w[safe] * valid
    return ((1 - p_t) ** gamma * -np.log(p_t) * w_i).sum() / w_i.sum()


def numpy_batch_dice(labels, logits, smooth=1e-5, include_background=False, ignore=255):
    """nnU-Net's SoftDiceLoss(batch_dice=True, do_bg=False) on softmax, 1 - mean dice."""
    p = _numpy_softmax(logits)
    k = logits.shape[-1]
    valid = (labels != ignore)[..., None]
    y = np.eye(k)[np.where(labels != ignore, labels, 0)] * valid
    p = p * valid
    tp = (p * y).sum((0, 1, 2))
    fp = (p * (1 - y)).sum((0, 1, 2))
    fn = ((1 - p) * y).sum((0, 1, 2))
    dc = (2 * tp + smooth) / np.clip(2 * tp + fp + fn + smooth, 1e-8, None)
    if not include_background:
        dc = dc[1:]
    return 1 - dc.mean()


def _loss_batch(seed=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(2, 6, 5, 4)).astype(np.float32) * 2
    labels = rng.integers(0, 4, size=(2, 6, 5))
    labels[1, :3] = 255
    return labels, logits


def test_focal_weighted_ce_dice_and_ce_dice_match_the_formulas():
    from segzoo.training.losses import get_loss

    labels, logits = _loss_batch()
    weights = [0.5, 1.0, 2.0, 4.0]
    assert float(get_loss("ce")(labels, logits)) == pytest.approx(
        numpy_weighted_ce(labels, logits), rel=1e-5)
    assert float(get_loss("ce", class_weights=weights)(labels, logits)) == pytest.approx(
        numpy_weighted_ce(labels, logits, weights), rel=1e-5)
    assert float(get_loss("focal")(labels, logits)) == pytest.approx(
        numpy_weighted_ce(labels, logits, gamma=2.0), rel=1e-5)
    dice = numpy_batch_dice(labels, logits)
    assert float(get_loss("dice")(labels, logits)) == pytest.approx(dice, rel=1e-5)
    assert float(get_loss("ce+dice")(labels, logits)) == pytest.approx(
        dice + numpy_weighted_ce(labels, logits), rel=1e-5)
    with pytest.raises(ValueError, match="ce\\+dice"):
        get_loss("tversky")


def test_new_losses_ignore_255_and_round_trip_config():
    from segzoo.training.losses import get_loss

    labels, logits = _loss_batch(5)
    for name in ("dice", "focal", "ce+dice"):
        loss_fn = get_loss(name, class_weights=[1, 2, 3, 4] if name != "dice" else None)
        variable = tf.Variable(logits)
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, variable)
        grad = tape.gradient(loss, variable).numpy()
        np.testing.assert_array_equal(grad[1, :3], 0.0)  # the ignored rows
        assert np.abs(grad[0]).sum() > 0
        other = logits.copy()
        other[1, :3] = 50 * np.random.default_rng(0).normal(size=other[1, :3].shape)
        assert float(loss_fn(labels, other)) == pytest.approx(float(loss), rel=1e-5)
        clone = type(loss_fn).from_config(loss_fn.get_config())
        assert float(clone(labels, logits)) == pytest.approx(float(loss), rel=1e-6)
        assert float(loss_fn(np.full((1, 2, 2), 255), np.zeros((1, 2, 2, 4), np.float32))) == 0.0
    perfect = np.where(np.eye(4, dtype=bool)[np.where(labels == 255, 0, labels)], 30.0, -30.0)
    assert float(get_loss("dice")(labels, perfect.astype(np.float32))) == pytest.approx(0, abs=1e-5)
