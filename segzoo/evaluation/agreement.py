"""How closely two runs of one model agree (float32 vs bfloat16, float32 vs TFLite int8, ...).

    from segzoo.evaluation.agreement import label_agreement, match_detections
    label_agreement(labels_fp32, labels_bf16)          # 0.997: fraction of equal pixels
    match_detections(reference, other, iou_threshold=0.9)
    # {"matched": 19, "reference": 20, "other": 19, "fraction": 0.95}

These compare a model with itself, not with ground truth: the reference run's
outputs play the part of the labels.
"""

from __future__ import annotations

import numpy as np


def label_agreement(reference, other) -> float:
    """Fraction of pixels whose class id is equal; `reference`, `other` int [..., H, W], same shape."""
    reference, other = np.asarray(reference), np.asarray(other)
    if reference.shape != other.shape:
        raise ValueError(f"label maps differ in shape: {reference.shape} vs {other.shape}")
    if reference.size == 0:
        return 1.0
    return float(np.mean(reference == other))


def box_iou(boxes_a, boxes_b) -> np.ndarray:
    """IoU float64 [N, M] of xyxy boxes [N, 4] and [M, 4] (pixels; empty boxes give 0)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_detections(reference, other, iou_threshold=0.9) -> dict:
    """Greedy one-to-one matching of two detection lists of one image.

    Args:
        reference, other: dicts with "boxes" [N, 4] xyxy pixels, "classes" [N]
            and "scores" [N] (only the detections to compare: already cut at
            `num_detections` and any score threshold).
        iou_threshold: a pair matches when its classes are equal and its box
            IoU is at least this.
    Returns:
        {"matched", "reference", "other", "fraction"}: reference detections are
        taken by descending score, each matched to the unmatched `other`
        detection of its class with the highest IoU >= `iou_threshold`;
        fraction = matched / max(reference, other) (1.0 when both are empty),
        so missing and extra detections both lower it.
    """
    ref_boxes = np.asarray(reference["boxes"]).reshape(-1, 4)
    oth_boxes = np.asarray(other["boxes"]).reshape(-1, 4)
    ref_classes = np.asarray(reference["classes"]).reshape(-1)
    oth_classes = np.asarray(other["classes"]).reshape(-1)
    order = np.argsort(-np.asarray(reference["scores"]).reshape(-1), kind="stable")
    iou = box_iou(ref_boxes, oth_boxes)
    iou[ref_classes[:, None] != oth_classes[None, :]] = -1.0
    taken = np.zeros(len(oth_boxes), bool)
    matched = 0
    for i in order:
        candidates = np.where(taken, -1.0, iou[i])
        if candidates.size and candidates.max() >= iou_threshold:
            taken[int(np.argmax(candidates))] = True
            matched += 1
    total = max(len(ref_boxes), len(oth_boxes))
    return {"matched": matched, "reference": len(ref_boxes), "other": len(oth_boxes),
            "fraction": 1.0 if total == 0 else matched / total}


def summarise_matches(matches) -> dict:
    """Sums per-image `match_detections` results into one (fraction over all detections)."""
    matched = sum(m["matched"] for m in matches)
    total = sum(max(m["reference"], m["other"]) for m in matches)
    return {"matched": matched, "reference": sum(m["reference"] for m in matches),
            "other": sum(m["other"] for m in matches),
            "fraction": 1.0 if total == 0 else matched / total}
