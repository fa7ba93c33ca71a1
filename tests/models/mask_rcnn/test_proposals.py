"""ProposalGenerator against a numpy transcription of torchvision's RPN.filter_proposals.

torchvision (models/detection/rpn.py, box_coder weights (1, 1, 1, 1)): per level
the `pre_nms_top_n` highest objectness logits, their deltas decoded on their
anchors (dw, dh clipped at log(1000 / 16)), boxes clipped to the image, boxes
with a side below `min_size` and scores below `score_thresh` (on the sigmoid)
removed, `batched_nms` by level at `nms_thresh` (suppress IoU > threshold),
then the `post_nms_top_n` best by score.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from segzoo.models.mask_rcnn.rpn import ProposalGenerator

CLIP = math.log(1000.0 / 16)


def decode(deltas, anchors):
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ctr_x, ctr_y = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0], deltas[:, 1]
    dw, dh = np.minimum(deltas[:, 2], CLIP), np.minimum(deltas[:, 3], CLIP)
    px, py = dx * widths + ctr_x, dy * heights + ctr_y
    pw, ph = np.exp(dw) * widths, np.exp(dh) * heights
    return np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=1)


def iou(box, boxes):
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes, scores, threshold):
    order, keep = list(np.argsort(-scores, kind="stable")), []
    while order:
        best = order.pop(0)
        keep.append(best)
        order = [i for i in order if iou(boxes[best], boxes[i][None])[0] <= threshold]
    return keep


def reference(objectness, deltas, anchors, image_size, pre_nms, post_nms, nms_threshold,
              min_size=1e-3, score_threshold=0.0):
    """torchvision's filter_proposals for one image: (boxes [n, 4], scores [n]) by score."""
    boxes_all, scores_all, levels_all = [], [], []
    for level, (logits, level_deltas, level_anchors) in enumerate(
            zip(objectness, deltas, anchors, strict=True)):
        top = np.argsort(-logits, kind="stable")[:pre_nms]
        boxes = decode(level_deltas[top], level_anchors[top])
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, image_size[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, image_size[0])
        boxes_all.append(boxes)
        scores_all.append(logits[top])
        levels_all.append(np.full(len(top), level))
    boxes, scores, levels = map(np.concatenate, (boxes_all, scores_all, levels_all))
    sizes_ok = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    keep = sizes_ok & (1 / (1 + np.exp(-scores)) >= score_threshold)
    boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
    kept = []
    for level in np.unique(levels):
        index = np.flatnonzero(levels == level)
        kept += list(index[nms(boxes[index], scores[index], nms_threshold)])
    kept = sorted(kept, key=lambda i: -scores[i])[:post_nms]
    return boxes[kept], scores[kept]


def random_inputs(rng, batch, counts, image_size):
    anchors, objectness, deltas = [], [], []
    for count in counts:
        centres = rng.uniform(-5, [image_size[1] + 5, image_size[0] + 5], (count, 2))
        sizes = rng.uniform(4, 24, (count, 2))
        anchors.append(np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32))
        objectness.append(rng.normal(0, 2, (batch, count)).astype(np.float32))
        deltas.append(rng.normal(0, 0.3, (batch, count, 4)).astype(np.float32))
    # One anchor entirely outside the image: clipped to an empty box, never a proposal.
    anchors[0][0] = [image_size[1] + 10, 2, image_size[1] + 20, 12]
    deltas[0][:, 0] = 0.0
    objectness[0][:, 0] = 10.0  # the best score of its level
    return objectness, deltas, anchors


@pytest.mark.parametrize("training", [False, True])
def test_proposals_equal_torchvision_filter_proposals(training):
    rng = np.random.default_rng(0)
    image_size = (40, 50)
    objectness, deltas, anchors = random_inputs(rng, 2, (30, 12), image_size)
    pre, post = (8, 9) if training else (6, 7)
    generator = ProposalGenerator(pre_nms_top_n_train=8, pre_nms_top_n_test=6,
                                  post_nms_top_n_train=9, post_nms_top_n_test=7, nms_threshold=0.5)
    proposals, valid = generator(
        [tf.constant(o) for o in objectness], [tf.constant(d) for d in deltas],
        [tf.constant(a) for a in anchors], image_size, training=training)
    assert proposals.shape == (2, post, 4) and valid.shape == (2, post)
    for b in range(2):
        want, _ = reference([o[b] for o in objectness], [d[b] for d in deltas], anchors,
                            image_size, pre, post, 0.5)
        got = proposals[b].numpy()[valid[b].numpy()]
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert not valid[b].numpy()[len(want):].any()
        np.testing.assert_array_equal(proposals[b].numpy()[len(want):], 0.0)


def test_no_valid_candidate_gives_all_invalid_slots_and_config_round_trips():
    image_size = (16, 16)
    anchors = [tf.constant([[20.0, 20.0, 30.0, 30.0], [40.0, 0.0, 50.0, 8.0]])]  # outside
    generator = ProposalGenerator(post_nms_top_n_test=3)
    proposals, valid = generator([tf.zeros([1, 2])], [tf.zeros([1, 2, 4])], anchors, image_size)
    assert proposals.shape == (1, 3, 4) and not valid.numpy().any()
    again = ProposalGenerator.from_config(generator.get_config())
    assert again.get_config() == generator.get_config()
