"""Anchors, box coder, box ops, matcher and sampler on hand-made cases."""

import numpy as np
import pytest

from segzoo.models.mask_rcnn.anchors import AnchorGenerator, cell_anchors
from segzoo.models.mask_rcnn.box_coder import BoxCoder
from segzoo.models.mask_rcnn.box_ops import clip_boxes, nms_padded, pairwise_iou
from segzoo.models.mask_rcnn.matcher import Matcher
from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler


def test_cell_anchors_match_torchvision_rounding():
    # sqrt(0.5) = 0.7071: ws = 32 / 0.7071 = 45.25, hs = 22.63 -> halves 22.6, 11.3 -> 23, 11.
    np.testing.assert_array_equal(
        cell_anchors((32,), (0.5, 1.0, 2.0)),
        [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]],
    )
    np.testing.assert_array_equal(
        cell_anchors((512,), (0.5, 1.0, 2.0)),
        [[-362, -181, 362, 181], [-256, -256, 256, 256], [-181, -362, 181, 362]],
    )
    # Round half to even as torch.round: size 5, ratio 1 -> +-2.5 -> +-2.
    np.testing.assert_array_equal(cell_anchors((5,), (1.0,)), [[-2, -2, 2, 2]])


def test_anchor_grid_counts_order_and_strides():
    generator = AnchorGenerator()
    feature_shapes = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    anchors = [a.numpy() for a in generator((64, 96), feature_shapes)]
    assert [len(a) for a in anchors] == [h * w * 3 for h, w in feature_shapes]
    p2 = anchors[0].reshape(16, 24, 3, 4)
    # Cell (row 2, col 5) at stride 4: shift (20, 8).
    np.testing.assert_array_equal(p2[2, 5, 1], [20 - 16, 8 - 16, 20 + 16, 8 + 16])
    np.testing.assert_array_equal(p2[0, 1, 0], [4 - 23, -11, 4 + 23, 11])
    # Centres of the ratio-1 anchors sit on the top-left corners of the cells.
    centres = (p2[..., 1, :2] + p2[..., 1, 2:]) / 2
    np.testing.assert_array_equal(centres[..., 0], np.tile(np.arange(24) * 4, (16, 1)))
    np.testing.assert_array_equal(centres[..., 1], np.tile(np.arange(16)[:, None] * 4, (1, 24)))
    # P6 stride follows torchvision: image // feature = 96 // 2 = 48 for 2 columns.
    p6 = anchors[4].reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(p6[0, 1, 1], [48 - 256, -256, 48 + 256, 256])


def test_anchor_generator_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="aspect_ratios"):
        AnchorGenerator(sizes=((32,), (64,)), aspect_ratios=((1.0,), (1.0,), (2.0,)))
    with pytest.raises(ValueError, match="feature maps"):
        AnchorGenerator()((64, 64), [(16, 16)])


def test_box_coder_hand_values_and_round_trip():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    reference = np.array([[0.0, 0.0, 10.0, 20.0]], np.float32)
    target = np.array([[5.0, 0.0, 25.0, 20.0]], np.float32)
    # centre x 5 -> 15: dx = 10 * 10 / 10; width 10 -> 20: dw = 5 log 2.
    np.testing.assert_allclose(coder.encode(target, reference).numpy(), [[10.0, 0.0, 5 * np.log(2), 0.0]], rtol=1e-6)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (50, 2))
    ref = np.concatenate([xy, xy + rng.uniform(1, 80, (50, 2))], 1).astype(np.float32)
    xy = rng.uniform(0, 100, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 80, (50, 2))], 1).astype(np.float32)
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        decoded = coder.decode(coder.encode(boxes, ref), ref).numpy()
        np.testing.assert_allclose(decoded, boxes, atol=1e-3)
    # exp is clamped at log(1000/16): a huge dw gives width 62.5 * w.
    huge = BoxCoder().decode(np.array([[0.0, 0.0, 50.0, 0.0]], np.float32), reference).numpy()
    np.testing.assert_allclose(huge[0, 2] - huge[0, 0], 10 * 1000 / 16, rtol=1e-5)


def test_box_ops_iou_and_clip():
    a = np.array([[[0, 0, 10, 10], [0, 0, 0, 0]]], np.float32)
    b = np.array([[[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]]], np.float32)
    iou = pairwise_iou(a, b).numpy()[0]
    np.testing.assert_allclose(iou, [[25 / 175, 1.0, 0.0], [0.0, 0.0, 0.0]], rtol=1e-6)
    clipped = clip_boxes(np.array([[-5.0, 3.0, 70.0, 90.0]], np.float32), 64, 48).numpy()
    np.testing.assert_array_equal(clipped, [[0, 3, 48, 64]])


def _greedy_nms(boxes, scores, valid, threshold, groups):
    order = [i for i in np.argsort(-scores, kind="stable") if valid[i]]
    keep = []
    for i in order:
        if all(groups[i] != groups[j] or pairwise_iou(boxes[i:i + 1], boxes[j:j + 1]).numpy()[0, 0] <= threshold
               for j in keep):
            keep.append(i)
    return keep


def test_nms_padded_matches_greedy_reference_and_handles_empty():
    rng = np.random.default_rng(1)
    n = 60
    xy = rng.uniform(0, 60, (2, n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (2, n, 2))], -1).astype(np.float32)
    scores = rng.uniform(size=(2, n)).astype(np.float32)
    valid = rng.uniform(size=(2, n)) > 0.2
    groups = rng.integers(0, 3, (2, n)).astype(np.int32)
    indices, keep = nms_padded(boxes, scores, valid, 0.5, 40, groups)
    for b in range(2):
        expected = _greedy_nms(boxes[b], scores[b], valid[b], 0.5, groups[b])[:40]
        assert list(indices[b].numpy()[keep[b].numpy()]) == expected
    # No candidates at all, and only invalid candidates: all slots invalid, no crash.
    indices, keep = nms_padded(np.zeros((1, 0, 4), np.float32), np.zeros((1, 0), np.float32),
                               np.zeros((1, 0), bool), 0.5, 5)
    assert indices.shape == (1, 5) and not keep.numpy().any()
    indices, keep = nms_padded(boxes, scores, np.zeros_like(valid), 0.5, 5)
    assert not keep.numpy().any() and (indices.numpy() == 0).all()


def test_matcher_thresholds_and_low_quality_matches():
    # 2 ground truths (plus one padding row) x 4 predictions.
    iou = np.array([[[0.9, 0.5, 0.1, 0.0], [0.2, 0.6, 0.25, 0.0], [0.99, 0.99, 0.99, 0.99]]], np.float32)
    gt_valid = np.array([[True, True, False]])
    matched, labels = Matcher(0.7, 0.3)(iou, gt_valid)
    np.testing.assert_array_equal(labels.numpy(), [[1, -1, 0, 0]])
    np.testing.assert_array_equal(matched.numpy(), [[0, 0, 0, 0]])
    matched, labels = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou, gt_valid)
    # Prediction 1 is ground truth 1's best (0.6): promoted, matched to its argmax (1).
    np.testing.assert_array_equal(labels.numpy(), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(matched.numpy(), [[0, 1, 0, 0]])
    # No valid ground truth: everything is background.
    _, labels = Matcher(0.5, 0.5, True)(iou, np.zeros((1, 3), bool))
    np.testing.assert_array_equal(labels.numpy(), [[0, 0, 0, 0]])
    _, labels = Matcher(0.5, 0.5)(np.zeros((1, 0, 4), np.float32), np.zeros((1, 0), bool))
    np.testing.assert_array_equal(labels.numpy(), [[0, 0, 0, 0]])


def test_sampler_counts_order_and_seed():
    labels = np.array([[1] * 10 + [0] * 20 + [-1] * 5, [1] * 2 + [0] * 3 + [-1] * 30], np.int32)
    sampler = BalancedPositiveNegativeSampler(8, 0.25)
    indices, valid, positive = (t.numpy() for t in sampler(labels, seed=3))
    # Image 0: 2 positives (25% of 8) then 6 negatives.
    assert valid[0].all() and positive[0].tolist() == [True] * 2 + [False] * 6
    assert set(labels[0][indices[0][:2]]) == {1} and set(labels[0][indices[0][2:]]) == {0}
    assert len(set(indices[0].tolist())) == 8
    # Image 1: 2 positives, only 3 negatives exist: 5 valid slots.
    assert valid[1].tolist() == [True] * 5 + [False] * 3
    assert sorted(indices[1][:5].tolist()) == [0, 1, 2, 3, 4]
    again = sampler(labels, seed=3)[0].numpy()
    np.testing.assert_array_equal(indices, again)
    # Fewer elements than slots and no positives at all.
    indices, valid, positive = (t.numpy() for t in sampler(np.zeros((1, 3), np.int32), seed=0))
    assert valid[0].tolist() == [True] * 3 + [False] * 5 and not positive.any()
