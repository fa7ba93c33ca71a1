"""Target assignment, losses and post-processing against hand values and NumPy references."""

import numpy as np
import tensorflow as tf

from segzoo.blocks.roi import roi_align
from segzoo.models.mask_rcnn import losses, postprocess, targets
from segzoo.models.mask_rcnn.box_coder import BoxCoder
from segzoo.models.mask_rcnn.matcher import Matcher
from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler


def test_roi_align_masks_equals_roi_align_block():
    rng = np.random.default_rng(0)
    masks = (rng.uniform(size=(2, 3, 20, 24)) > 0.5).astype(np.uint8)
    xy = rng.uniform(-4, 18, (2, 5, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 12, (2, 5, 2))], -1).astype(np.float32)
    index = rng.integers(0, 3, (2, 5)).astype(np.int32)
    got = targets.roi_align_masks(masks, boxes, index, output_size=7, sampling_ratio=2).numpy()
    features = masks.reshape(6, 20, 24, 1).astype(np.float32)
    flat_index = (np.arange(2)[:, None] * 3 + index).reshape(-1).astype(np.int32)
    expected = roi_align(features, boxes.reshape(-1, 4), flat_index, 7, sampling_ratio=2, aligned=True)
    np.testing.assert_allclose(got.reshape(-1, 7, 7), expected.numpy()[..., 0], atol=1e-5)


def test_rpn_targets_positive_for_best_anchor_and_all_negative_without_gt():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [30, 30, 40, 40], [12, 12, 22, 22]], np.float32)
    gt = np.array([[[0, 0, 18, 18], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    gt_valid = np.array([[True, False], [False, False]])
    out = targets.rpn_targets(anchors, gt, gt_valid, Matcher(0.7, 0.3, True), BalancedPositiveNegativeSampler(4, 0.5),
                              BoxCoder(), seed=0)
    indices, valid, labels = out["indices"].numpy(), out["valid"].numpy(), out["labels"].numpy()
    # Image 0: anchor 1 (IoU 0.81) positive; anchors 2 (IoU 0) and 3 (0.09) negative; anchor 0 (0.31) ignored.
    assert sorted(zip(indices[0][valid[0]].tolist(), labels[0][valid[0]].tolist(), strict=True)) == [(1, 1.0), (2, 0.0), (3, 0.0)]
    np.testing.assert_allclose(out["regression"].numpy()[0][labels[0] == 1],
                               [[-0.05, -0.05, np.log(0.9), np.log(0.9)]], rtol=1e-5)
    # Image 1 has no instance: 4 negatives, no positive.
    assert valid[1].all() and (labels[1] == 0).all()


def test_roi_targets_add_gt_boxes_and_sample_background_for_negatives():
    proposals = np.array([[[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 0, 0]]] * 2, np.float32)
    proposal_valid = np.array([[True, True, False]] * 2)
    gt_boxes = np.array([[[1, 1, 11, 11]], [[0, 0, 0, 0]]], np.float32)
    gt_classes = np.array([[2], [0]], np.int32)
    out = targets.roi_targets(proposals, proposal_valid, gt_boxes, gt_classes, Matcher(0.5, 0.5),
                              BalancedPositiveNegativeSampler(8, 0.25), BoxCoder((10, 10, 5, 5)), seed=0)
    rois, valid, positive, labels = (out[k].numpy() for k in ("rois", "valid", "positive", "labels"))
    # Image 0: proposal 0 (IoU 0.68) and the GT box itself are positive (class 2), proposal 1 negative.
    assert valid[0].tolist() == [True] * 3 + [False] * 5
    assert positive[0].tolist() == [True, True] + [False] * 6
    assert sorted(map(tuple, rois[0][:2].tolist())) == [(0, 0, 10, 10), (1, 1, 11, 11)]
    assert labels[0].tolist() == [2, 2] + [0] * 6
    gt_row = [i for i in range(2) if rois[0][i].tolist() == [1, 1, 11, 11]][0]
    np.testing.assert_allclose(out["regression"].numpy()[0][gt_row], [0, 0, 0, 0], atol=1e-6)
    # Image 1: no instances: the two valid proposals are background, nothing positive.
    assert valid[1].tolist() == [True] * 2 + [False] * 6 and not positive[1].any()
    assert (labels[1] == 0).all()


def _bce(logit, target):
    return np.maximum(logit, 0) - logit * target + np.log1p(np.exp(-np.abs(logit)))


def test_losses_hand_values():
    np.testing.assert_allclose(losses.smooth_l1(tf.constant([0.05, -0.5, 2.0]), 1.0 / 9).numpy(),
                               [0.5 * 0.05**2 * 9, 0.5 - 0.5 / 9, 2.0 - 0.5 / 9], rtol=1e-6)
    logits = np.array([[2.0, -1.0, 0.5]], np.float32)
    labels = np.array([[1.0, 0.0, 1.0]], np.float32)
    valid = np.array([[True, True, False]])
    expected = (_bce(2.0, 1.0) + _bce(-1.0, 0.0)) / 2
    np.testing.assert_allclose(losses.rpn_objectness_loss(logits, labels, valid).numpy(), expected, rtol=1e-6)
    deltas = np.zeros((1, 2, 3, 4), np.float32)
    deltas[0, 0, 2] = [1.0, 0.0, 0.0, 0.5]
    reg = losses.box_regression_loss(deltas, np.array([[2, 0]]), np.zeros((1, 2, 4), np.float32),
                                     np.array([[True, False]]), np.array([[True, True]]), beta=1.0)
    np.testing.assert_allclose(reg.numpy(), (0.5 + 0.125) / 2, rtol=1e-6)


def test_mask_loss_uses_only_gt_channel_of_positives():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 2, 4, 4, 3)).astype(np.float32)
    mask_targets = (rng.uniform(size=(1, 2, 4, 4)) > 0.5).astype(np.float32)
    labels = np.array([[2, 1]], np.int32)
    positive = np.array([[True, False]])
    got = losses.mask_loss(logits, mask_targets, labels, positive).numpy()
    np.testing.assert_allclose(got, _bce(logits[0, 0, :, :, 2], mask_targets[0, 0]).mean(), rtol=1e-5)
    agnostic = losses.mask_loss(logits[..., :1], mask_targets, labels, positive, class_agnostic=True).numpy()
    np.testing.assert_allclose(agnostic, _bce(logits[0, 0, :, :, 0], mask_targets[0, 0]).mean(), rtol=1e-5)
    soft = losses.mask_loss(logits, mask_targets, labels, positive, mode="softmax").numpy()
    log_softmax = logits[0, 0] - np.log(np.exp(logits[0, 0]).sum(-1, keepdims=True))
    pixel_class = np.where(mask_targets[0, 0] >= 0.5, 2, 0)
    expected = -np.take_along_axis(log_softmax, pixel_class[..., None], -1).mean()
    np.testing.assert_allclose(soft, expected, rtol=1e-5)
    # No positive RoI: exactly 0, not NaN.
    assert losses.mask_loss(logits, mask_targets, labels, np.zeros((1, 2), bool)).numpy() == 0.0


def test_detect_thresholds_nms_per_class_and_padding():
    proposals = np.array([[[10, 10, 50, 50], [12, 12, 52, 52], [10, 10, 50, 50], [0, 0, 5, 5]]], np.float32)
    probabilities = np.array([[[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.0, 0.7], [0.97, 0.03, 0.0]]])
    logits = np.log(np.maximum(probabilities, 1e-9)).astype(np.float32)
    deltas = np.zeros((1, 4, 3, 4), np.float32)
    out = postprocess.detect(logits, deltas, proposals, np.ones((1, 4), bool), (100, 100), BoxCoder((10, 10, 5, 5)),
                             detections_per_image=5)
    n = int(out["valid"].numpy().sum())
    # Proposal 1 (class 1) is suppressed by proposal 0 (IoU 0.82); proposal 2 is class 2 so it stays;
    # proposal 3's best foreground score 0.03 is below 0.05.
    assert n == 2
    np.testing.assert_allclose(out["scores"].numpy()[0], [0.9, 0.7, 0, 0, 0], rtol=1e-5)
    assert out["classes"].numpy()[0].tolist() == [1, 2, 0, 0, 0]
    np.testing.assert_allclose(out["boxes"].numpy()[0][:2], [[10, 10, 50, 50]] * 2, rtol=1e-6)
    empty = postprocess.detect(logits, deltas, proposals, np.zeros((1, 4), bool), (100, 100), BoxCoder(),
                               detections_per_image=5)
    assert not empty["valid"].numpy().any()


def _torch_bilinear_resize(mask, out_h, out_w):
    """F.interpolate(mode="bilinear", align_corners=False) in NumPy."""
    in_h, in_w = mask.shape

    def taps(out_size, in_size):
        src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
        low = np.floor(src).astype(int)
        high = np.where(low < in_size - 1, low + 1, low)
        return low, high, src - low

    yl, yh, fy = taps(out_h, in_h)
    xl, xh, fx = taps(out_w, in_w)
    top = mask[yl][:, xl] * (1 - fx) + mask[yl][:, xh] * fx
    bottom = mask[yh][:, xl] * (1 - fx) + mask[yh][:, xh] * fx
    return top * (1 - fy[:, None]) + bottom * fy[:, None]


def _paste_reference(mask, box, height, width, padding=1):
    """torchvision.models.detection.roi_heads.paste_masks_in_image for one mask, in NumPy."""
    size = mask.shape[0]
    scale = (size + 2 * padding) / size
    padded = np.pad(mask, padding)
    w_half = (box[2] - box[0]) * 0.5 * scale
    h_half = (box[3] - box[1]) * 0.5 * scale
    cx, cy = (box[2] + box[0]) * 0.5, (box[3] + box[1]) * 0.5
    x0, y0, x1, y1 = (int(v) for v in (cx - w_half, cy - h_half, cx + w_half, cy + h_half))
    w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
    resized = _torch_bilinear_resize(padded, h, w)
    image = np.zeros((height, width), np.float32)
    xa, xb = max(x0, 0), min(x1 + 1, width)
    ya, yb = max(y0, 0), min(y1 + 1, height)
    if xb > xa and yb > ya:
        image[ya:yb, xa:xb] = resized[ya - y0:yb - y0, xa - x0:xb - x0]
    return image


def test_paste_masks_matches_torchvision_reference():
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(1, 5, 28, 28)).astype(np.float32)
    boxes = np.array([[[3.7, 5.2, 30.1, 22.9], [-6.0, -3.5, 12.0, 9.0], [40.0, 20.0, 75.0, 60.0],
                       [10.0, 10.0, 10.5, 10.2], [0.0, 0.0, 0.0, 0.0]]], np.float32)
    got = postprocess.paste_masks(masks, boxes, 45, 70).numpy()
    for i in range(5):
        np.testing.assert_allclose(got[0, i], _paste_reference(masks[0, i], boxes[0, i], 45, 70), atol=1e-5)
