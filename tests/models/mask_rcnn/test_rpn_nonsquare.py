"""RPN proposals on a non-square input against a numpy transcription of torchvision's RPN.

torchvision (`rpn.RegionProposalNetwork`, `anchor_utils.AnchorGenerator`):
strides `image_size // grid_size` per axis, cell anchors round([-w, -h, w, h] / 2),
head outputs flattened (H, W, A) then (dx, dy, dw, dh), decode with dw/dh
clamped at log(1000/16), clip to the resized (h, w), drop sides < 1e-3, rank
by float32 sigmoid, per-level NMS 0.7, keep the best `post_nms_top_n`.
Also guards the parity benchmark's synthetic weights: their RPN logits must
not saturate float32 sigmoid, or torchvision's ranking is an arbitrary sort
of ties (the cause of the 35% proposal agreement on a 600x400 photo).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from segzoo.models.mask_rcnn.anchors import AnchorGenerator
from segzoo.models.mask_rcnn.rpn import ProposalGenerator, RegionProposalNetwork, RPNHead
from tests.weights import synthetic

PADDED = (64, 96)  # H != W, both multiples of 32
CLIP = (60, 90)  # the resized size inside the padding
FEATURES = [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]  # P6: strides 64 x 48


def _torchvision_anchors():
    out = []
    for (fh, fw), size in zip(FEATURES, (32, 64, 128, 256, 512), strict=True):
        sy, sx = PADDED[0] // fh, PADDED[1] // fw
        h_ratios = np.sqrt(np.float32([0.5, 1.0, 2.0]))
        w_ratios = 1 / h_ratios
        ws, hs = w_ratios * size, h_ratios * size
        base = np.round(np.stack([-ws, -hs, ws, hs], 1) / 2)
        yy, xx = np.meshgrid(np.arange(fh) * sy, np.arange(fw) * sx, indexing="ij")
        shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], 1)
        out.append((shifts[:, None, :] + base[None]).reshape(-1, 4).astype(np.float32))
    return out


def _iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / (area(a)[:, None] + area(b)[None] - inter))


def _torchvision_proposals(logits, deltas, anchors, pre_nms=1000, post_nms=1000):
    boxes, probs, levels = [], [], []
    for lvl, (lg, de, an) in enumerate(zip(logits, deltas, anchors, strict=True)):
        top = np.argsort(-lg, kind="stable")[:pre_nms]
        d, a = de[top].astype(np.float64), an[top].astype(np.float64)
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        cx, cy = a[:, 0] + 0.5 * w, a[:, 1] + 0.5 * h
        pw = np.exp(np.minimum(d[:, 2], math.log(1000 / 16))) * w
        ph = np.exp(np.minimum(d[:, 3], math.log(1000 / 16))) * h
        px, py = d[:, 0] * w + cx, d[:, 1] * h + cy
        b = np.stack([px - pw / 2, py - ph / 2, px + pw / 2, py + ph / 2], 1)
        b[:, 0::2] = np.clip(b[:, 0::2], 0, CLIP[1])
        b[:, 1::2] = np.clip(b[:, 1::2], 0, CLIP[0])
        boxes.append(b)
        probs.append((1 / (1 + np.exp(-lg[top].astype(np.float64)))).astype(np.float32))
        levels.append(np.full(len(top), lvl))
    boxes, probs, levels = np.concatenate(boxes), np.concatenate(probs), np.concatenate(levels)
    ok = np.flatnonzero(((boxes[:, 2] - boxes[:, 0]) >= 1e-3) & ((boxes[:, 3] - boxes[:, 1]) >= 1e-3))
    iou = _iou(boxes, boxes)
    keep = []
    for lvl in range(len(logits)):
        idx = ok[levels[ok] == lvl]
        suppressed = np.zeros(len(boxes), bool)
        for k in idx[np.argsort(-probs[idx], kind="stable")]:
            if not suppressed[k]:
                keep.append(k)
                suppressed |= iou[k] > 0.7
    keep = np.asarray(keep)
    keep = keep[np.argsort(-probs[keep], kind="stable")][:post_nms]
    return boxes[keep].astype(np.float32), probs


def _head_from_synthetic():
    state = synthetic.detector_state_dict("maskrcnn_resnet50_fpn", released=True)
    head = RPNHead(num_anchors=3, num_channels=256)
    head.build([(1, None, None, 256)])
    for layer, name in ((head.conv, "conv"), (head.cls_logits, "cls_logits"), (head.bbox_pred, "bbox_pred")):
        layer.set_weights([state[f"rpn.head.{name}.weight"].transpose(2, 3, 1, 0), state[f"rpn.head.{name}.bias"]])
    return head


def _features(seed=0):
    # The synthetic detector's FPN levels on a photo have std ~10-14 (P2..P6).
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(0, 12, (1, h, w, 256)).astype(np.float32)) for h, w in FEATURES]


def test_proposals_match_torchvision_transcription_on_non_square_input():
    from segzoo.models.mask_rcnn.matcher import Matcher
    from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler

    head = _head_from_synthetic()
    rpn = RegionProposalNetwork(AnchorGenerator(), head, ProposalGenerator(), Matcher(0.7, 0.3, True),
                                BalancedPositiveNegativeSampler(256, 0.5))
    features = _features()
    out = rpn(features, image_shape=PADDED, clip_size=CLIP, training=False)
    anchors = _torchvision_anchors()
    for got, want in zip(out["anchors"], anchors, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    logits = [o[0].numpy() for o in out["objectness"]]
    deltas = [d[0].numpy() for d in out["deltas"]]
    # Sigmoid in float32 must separate the candidates, or the reference's order is a sort of ties.
    assert max(float(lg.max()) for lg in logits) < 15.0
    want, probs = _torchvision_proposals(logits, deltas, anchors)
    got = out["proposals"][0].numpy()[out["valid"][0].numpy()]
    assert got.shape == want.shape
    assert np.all(got[:, 2] <= CLIP[1]) and np.all(got[:, 3] <= CLIP[0])
    np.testing.assert_allclose(got, want, atol=1e-3)
