"""MS R-CNN MaskIoU head: layers against a numpy forward, targets against numpy IoU, loss and scores pinned."""

import numpy as np
import pytest
import tensorflow as tf

from segzoo.models.mask_rcnn.maskiou_head import (
    MaskIoUHead,
    MaskIoUPredictor,
    mask_scores,
    maskiou_loss,
    maskiou_targets,
)
from tests.layer_testing import check_layer


def np_conv_torch(x, kernel, bias, stride):
    """torch Conv2d(kernel 3, padding 1, stride) on NHWC x with a Keras (kh, kw, in, out) kernel."""
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out_h = (x.shape[1] + 2 - 3) // stride + 1
    out_w = (x.shape[2] + 2 - 3) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3])) + bias
    for ky in range(3):
        for kx in range(3):
            window = padded[:, ky:ky + stride * (out_h - 1) + 1:stride, kx:kx + stride * (out_w - 1) + 1:stride]
            out += window @ kernel[ky, kx]
    return out


def np_maskiou_head(head, features, masks):
    """MS R-CNN's MaskIoUFeatureExtractor.forward on NHWC numpy arrays, with the head's weights."""
    r, s2 = masks.shape[0], masks.shape[1]
    pooled = masks.reshape(r, s2 // 2, 2, s2 // 2, 2).max(axis=(2, 4))[..., None]
    x = np.concatenate([features, pooled], -1).astype(np.float64)
    for i, conv in enumerate(head.convs):
        kernel, bias = conv.get_weights()
        x = np.maximum(np_conv_torch(x, kernel, bias, 2 if i == len(head.convs) - 1 else 1), 0)
    x = x.reshape(r, -1)
    for fc in (head.fc1, head.fc2):
        kernel, bias = fc.get_weights()
        x = np.maximum(x @ kernel + bias, 0)
    return x


def _inputs(rng, rois=3, size=6, channels=5):
    features = rng.normal(size=(rois, size, size, channels)).astype(np.float32)
    masks = rng.random((rois, 2 * size, 2 * size)).astype(np.float32)
    return features, masks


def test_maskiou_head_check_layer_and_shapes():
    features, masks = _inputs(np.random.default_rng(0))
    check_layer(MaskIoUHead, {"layers": (4, 4, 4, 6), "representation_size": 8}, [features, masks],
                expected_output_shape=(3, 8), atol=1e-5, rtol=1e-5)
    check_layer(MaskIoUHead, {"layers": (4, 6), "representation_size": 8}, [features, masks[..., None]],
                expected_output_shape=(3, 8), atol=1e-5, rtol=1e-5)
    check_layer(MaskIoUPredictor, {"num_classes": 4}, np.ones((3, 8), np.float32), expected_output_shape=(3, 5))
    check_layer(MaskIoUPredictor, {"num_classes": 4, "class_agnostic": True}, np.ones((3, 8), np.float32),
                expected_output_shape=(3, 1))


def test_maskiou_head_paper_layout():
    head = MaskIoUHead()
    head.build((None, 14, 14, 256), (None, 28, 28))
    assert [conv.filters for conv in head.convs] == [256] * 4
    assert [conv.strides for conv in head.convs] == [(1, 1)] * 3 + [(2, 2)]
    # The reference: 257 -> 256 conv, 3 x 256 -> 256 convs, 256*7*7 -> 1024, 1024 -> 1024.
    expected = (257 * 256 * 9 + 256) + 3 * (256 * 256 * 9 + 256) + (256 * 49 * 1024 + 1024) + (1024 * 1024 + 1024)
    assert head.count_params() == expected
    predictor = MaskIoUPredictor(80)
    assert tuple(predictor.compute_output_shape((None, 1024))) == (None, 81)
    with pytest.raises(ValueError, match="twice"):
        MaskIoUHead().build((None, 14, 14, 256), (None, 14, 14))
    with pytest.raises(ValueError, match="num_classes"):
        MaskIoUPredictor(0)


def test_maskiou_head_matches_numpy_reference_with_torch_padding():
    rng = np.random.default_rng(1)
    features, masks = _inputs(rng, size=6)  # even size: TF "same" would pad the stride-2 conv asymmetrically
    head = MaskIoUHead(layers=(4, 4, 4, 6), representation_size=8)
    output = head(features, masks).numpy()
    for layer in [*head.convs, head.fc1, head.fc2]:  # non-zero biases so their layout is tested too
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    output = head(features, masks).numpy()
    np.testing.assert_allclose(output, np_maskiou_head(head, features, masks), rtol=1e-4, atol=1e-5)
    assert output.std() > 0


def _np_iou(probs, targets, threshold=0.5):
    p = probs > threshold
    t = targets >= 0.5
    overlap = (p & t).sum((-2, -1))
    union = (p | t).sum((-2, -1))
    return overlap / np.maximum(union, 1)


def test_maskiou_targets_against_numpy_iou():
    rng = np.random.default_rng(2)
    probs = rng.random((2, 7, 28, 28)).astype(np.float32)
    targets = rng.random((2, 7, 28, 28)).astype(np.float32)
    targets[0, 0] = 0.0
    probs[0, 0] = 0.0  # empty prediction and target -> 0
    iou = maskiou_targets(probs, targets).numpy()
    assert iou.shape == (2, 7) and iou.dtype == np.float32
    np.testing.assert_allclose(iou, _np_iou(probs, targets), rtol=1e-6)
    assert iou[0, 0] == 0.0
    # Hand case: prediction = left half, target = left three quarters: 14*28 / 21*28.
    probs = np.zeros((1, 28, 28), np.float32)
    probs[:, :, :14] = 0.9
    targets = np.zeros((1, 28, 28), np.float32)
    targets[:, :, :21] = 1.0
    np.testing.assert_allclose(maskiou_targets(probs, targets).numpy(), [14 / 21], rtol=1e-6)


def test_maskiou_targets_full_object_union():
    # A 28 x 28 px RoI (one grid cell = one pixel). The prediction equals the in-box GT (10 x 28 px),
    # but the GT object has 560 px: half of it lies outside the RoI -> IoU 280 / 560 = 0.5.
    probs = np.zeros((2, 28, 28), np.float32)
    probs[:, :10] = 0.8
    targets = (probs > 0.5).astype(np.float32)
    rois = np.array([[0, 0, 28, 28], [0, 0, 56, 56]], np.float32)  # second: 2 x 2 px per cell
    gt_areas = np.array([560.0, 4 * 280.0], np.float32)  # second: all of the object is in the box
    iou = maskiou_targets(probs, targets, rois=rois, gt_areas=gt_areas).numpy()
    np.testing.assert_allclose(iou, [0.5, 1.0], rtol=1e-6)
    # Random cases against the formula in numpy; the GT area never counts below the in-grid area.
    rng = np.random.default_rng(3)
    probs = rng.random((9, 28, 28)).astype(np.float32)
    targets = rng.random((9, 28, 28)).astype(np.float32)
    xy = rng.uniform(0, 50, (9, 2))
    rois = np.concatenate([xy, xy + rng.uniform(10, 90, (9, 2))], 1).astype(np.float32)
    gt_areas = rng.uniform(0, 6000, 9).astype(np.float32)
    p, t = probs > 0.5, targets >= 0.5
    full = np.maximum(t.sum((1, 2)), gt_areas * 784 / ((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])))
    overlap = (p & t).sum((1, 2))
    expected = overlap / np.maximum(p.sum((1, 2)) + full - overlap, 1)
    np.testing.assert_allclose(maskiou_targets(probs, targets, rois, gt_areas).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="both"):
        maskiou_targets(probs, targets, rois=rois)


def test_maskiou_loss_against_numpy_and_empty():
    rng = np.random.default_rng(4)
    predictions = rng.normal(0.5, 0.3, (2, 6, 4)).astype(np.float32)
    labels = rng.integers(1, 4, (2, 6)).astype(np.int32)
    targets = rng.random((2, 6)).astype(np.float32)
    targets[0, :2] = 0.0  # a zero IoU target does not count (reference l2_loss)
    positive = rng.random((2, 6)) > 0.3
    counted = positive & (targets > 0)
    picked = np.take_along_axis(predictions, labels[..., None], -1)[..., 0]
    expected = (0.5 * (picked - targets) ** 2 * counted).sum() / counted.sum()
    np.testing.assert_allclose(maskiou_loss(predictions, labels, targets, positive).numpy(), expected, rtol=1e-6)
    # Class-agnostic predictions read column 0.
    agnostic = predictions[..., :1]
    expected = (0.5 * (agnostic[..., 0] - targets) ** 2 * counted).sum() / counted.sum()
    np.testing.assert_allclose(maskiou_loss(agnostic, labels, targets, positive).numpy(), expected, rtol=1e-6)
    variable = tf.Variable(predictions)
    with tf.GradientTape() as tape:
        loss = maskiou_loss(variable, labels, targets, np.zeros_like(positive))
    assert loss.numpy() == 0.0 and np.all(np.isfinite(tape.gradient(loss, variable).numpy()))


def test_mask_scores_multiply_class_score_by_predicted_iou():
    predictions = np.array([[[0.1, 0.8, 0.3], [0.0, 0.5, 0.9]]], np.float32)
    scores = mask_scores(np.array([[0.9, 0.6]], np.float32), predictions, np.array([[1, 2]], np.int32))
    np.testing.assert_allclose(scores.numpy(), [[0.72, 0.54]], rtol=1e-6)


def test_maskiou_branch_wired_to_mask_rcnn_components_trains():
    """Pooler -> MaskIoU head on positive RoIs, targets from roi_align_masks, one gradient step."""
    from segzoo.blocks import MultiLevelRoIPooler
    from segzoo.models.mask_rcnn.box_ops import gather_rows
    from segzoo.models.mask_rcnn.targets import roi_align_masks

    rng = np.random.default_rng(5)
    pyramid = {f"P{i + 2}": tf.constant(rng.normal(size=(2, 64 // 2 ** (i + 2), 64 // 2 ** (i + 2), 8)), tf.float32)
               for i in range(4)}
    gt_masks = np.zeros((2, 2, 64, 64), np.uint8)
    gt_masks[0, 0, 4:40, 4:40] = 1
    gt_masks[1, 1, 5:30, 30:50] = 1
    rois = tf.constant([[[2, 2, 36, 44], [0, 0, 1, 1]], [[28, 0, 52, 28], [30, 5, 50, 30]]], tf.float32)
    matched = tf.constant([[0, 0], [1, 1]], tf.int32)
    labels = tf.constant([[1, 0], [2, 2]], tf.int32)
    positive = labels > 0
    pooled = tf.reshape(MultiLevelRoIPooler(7, sampling_ratio=2)(pyramid, rois), [-1, 7, 7, 8])  # [B * R, 7, 7, C]
    probs = tf.constant(rng.random((2, 2, 14, 14)), tf.float32)  # the mask head's output, class channel
    targets = roi_align_masks(tf.constant(gt_masks), rois, matched, 14)
    gt_areas = gather_rows(tf.reduce_sum(tf.cast(gt_masks, tf.float32), [2, 3]), matched)
    iou = maskiou_targets(probs, targets, rois, gt_areas)
    p, t = probs.numpy() > 0.5, targets.numpy() >= 0.5
    roi_area = np.prod(rois.numpy()[..., 2:] - rois.numpy()[..., :2], -1)
    full = np.maximum(t.sum((2, 3)), gt_areas.numpy() * 196 / roi_area)
    overlap = (p & t).sum((2, 3))
    np.testing.assert_allclose(iou.numpy(), overlap / np.maximum(p.sum((2, 3)) + full - overlap, 1), rtol=1e-5)
    assert iou.numpy()[1, 1] > 0.0

    head, predictor = MaskIoUHead(layers=(8, 8), representation_size=16), MaskIoUPredictor(2)
    with tf.GradientTape() as tape:
        predicted = tf.reshape(predictor(head(pooled, tf.reshape(probs, [-1, 14, 14]))), [2, 2, 3])
        loss = maskiou_loss(predicted, labels, iou, positive)
    variables = head.trainable_variables + predictor.trainable_variables
    gradients = tape.gradient(loss, variables)
    assert loss.numpy() > 0 and all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
    scores = mask_scores(tf.constant([[0.9, 0.8], [0.7, 0.6]]), predicted, labels)
    np.testing.assert_allclose(scores.numpy(), [[0.9, 0.8], [0.7, 0.6]] * np.take_along_axis(
        predicted.numpy(), labels.numpy()[..., None], -1)[..., 0], rtol=1e-6)
