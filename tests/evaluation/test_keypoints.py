"""Keypoint AP (OKS) and mask-scored segm AP against pycocotools run directly on hand-written JSON.

As in test_instance.py: the reference files are written here (rectangle masks as
hand-computed RLE, keypoints as COCO's flat lists), COCOeval runs on the files the
way the COCO toolkit's example does, and InstanceEvaluator fed the same instances
as numpy arrays must give the same numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segzoo.evaluation.instance import InstanceEvaluator
from segzoo.evaluation.keypoints import (
    COCO_PERSON_SIGMAS,
    DEFAULT_KEYPOINT_SIGMA,
    keypoint_sigmas,
)
from tests.evaluation.test_instance import H, W, rect_mask, rect_rle_counts


def _scene(num_keypoints, seed=0):
    """GT people (rect, keypoints [K, 3], crowd) and detections (rect, keypoints, score, mask score).

    Image 1: two people detected with small / large keypoint errors plus a false
    positive; image 2: a person without labelled keypoints (ignored by COCO) and a
    crowd; image 3: a negative with a false positive; image 4: a missed person.
    """
    rng = np.random.default_rng(seed)

    def person(x1, y1, x2, y2, labelled=0.8):
        points = np.zeros((num_keypoints, 3))
        points[:, 0] = rng.integers(x1, x2, num_keypoints)
        points[:, 1] = rng.integers(y1, y2, num_keypoints)
        points[:, 2] = rng.choice([1, 2], num_keypoints)
        points[rng.random(num_keypoints) > labelled] = 0
        return points

    def guess(points, error):
        out = points.copy()
        out[:, :2] += rng.normal(0, error, (num_keypoints, 2))
        out[:, 2] = rng.uniform(0.1, 1.0, num_keypoints)  # keypoint scores: ignored by OKS
        return out

    gt = {
        1: [((5, 5, 30, 55), person(5, 5, 30, 55), False),
            ((40, 10, 75, 58), person(40, 10, 75, 58), False)],
        2: [((10, 10, 40, 50), person(10, 10, 40, 50, labelled=0.0), False),
            ((45, 5, 79, 59), person(45, 5, 79, 59), True)],
        3: [],
        4: [((20, 20, 50, 50), person(20, 20, 50, 50), False)],
    }  # fmt: skip
    dt = {
        1: [((6, 5, 31, 54), guess(gt[1][0][1], 0.8), 0.9, 0.5),
            ((41, 12, 75, 57), guess(gt[1][1][1], 3.0), 0.8, 0.95),
            ((0, 0, 10, 10), guess(person(0, 0, 10, 10), 0.0), 0.4, 0.3)],
        2: [((10, 11, 40, 50), guess(person(10, 10, 40, 50), 1.0), 0.7, 0.6),
            ((50, 10, 70, 50), guess(gt[2][1][1], 1.0), 0.6, 0.6)],
        3: [((30, 30, 50, 50), guess(person(30, 30, 50, 50), 0.0), 0.5, 0.2)],
        4: [],
    }  # fmt: skip
    return gt, dt


def _write_reference(tmp_path, gt, dt, num_keypoints, mask_scored=False):
    images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.jpg"} for i in gt]
    annotations = []
    for image_id, people in gt.items():
        for (x1, y1, x2, y2), points, crowd in people:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd), "segmentation": rect_rle_counts(x1, y1, x2, y2),
                "keypoints": points.reshape(-1).tolist(),
                "num_keypoints": int((points[:, 2] > 0).sum())})  # fmt: skip
    names = [f"k{i}" for i in range(num_keypoints)]
    categories = [{"id": 1, "name": "person", "keypoints": names, "skeleton": []}]
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations,
                                   "categories": categories}))
    results = {"keypoints": [], "segm": [], "bbox": []}
    for image_id, dets in dt.items():
        for (x1, y1, x2, y2), points, score, mask_score in dets:
            results["keypoints"].append({"image_id": image_id, "category_id": 1, "score": score,
                                         "keypoints": points.reshape(-1).tolist()})
            results["bbox"].append({"image_id": image_id, "category_id": 1, "score": score,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1]})
            rle = rect_rle_counts(x1, y1, x2, y2)
            results["segm"].append({"image_id": image_id, "category_id": 1,
                                    "score": mask_score if mask_scored else score,
                                    "segmentation": rle})
    return gt_path, results


def _pycocotools(gt_path, results, iou_type, sigmas=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        if iou_type == "segm":  # uncompressed RLE results: compress as loadRes expects
            from pycocotools import mask as mask_utils

            results = [{**r, "segmentation": mask_utils.frPyObjects(
                r["segmentation"], H, W)} for r in results]
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.asarray(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _evaluator(gt, dt, num_keypoints, iou_types=("bbox", "segm", "keypoints"), **kwargs):
    evaluator = InstanceEvaluator(category_ids=[1], class_names=["person"], iou_types=iou_types,
                                  **kwargs)
    for image_id in gt:
        people, dets = gt[image_id], dt[image_id]
        evaluator.add(image_id, {
            "boxes": np.asarray([p[0] for p in people], np.float32).reshape(-1, 4),
            "classes": np.ones(len(people), np.int32),
            "masks": np.asarray([rect_mask(*p[0]) for p in people], np.uint8).reshape(-1, H, W),
            "is_crowd": np.asarray([p[2] for p in people], bool),
            "keypoints": np.asarray([p[1] for p in people], np.float32).reshape(
                -1, num_keypoints, 3),
        }, {
            "boxes": np.asarray([d[0] for d in dets], np.float32).reshape(-1, 4),
            "scores": np.asarray([d[2] for d in dets], np.float32),
            "mask_scores": np.asarray([d[3] for d in dets], np.float32),
            "classes": np.ones(len(dets), np.int32),
            "masks": np.asarray([rect_mask(*d[0]) for d in dets], np.uint8).reshape(-1, H, W),
            "keypoints": np.asarray([d[1] for d in dets], np.float32).reshape(
                -1, num_keypoints, 3),
        })  # fmt: skip
    return evaluator


@pytest.mark.parametrize("num_keypoints", [17, 4])
def test_keypoint_ap_equals_pycocotools(tmp_path, num_keypoints):
    gt, dt = _scene(num_keypoints)
    gt_path, results = _write_reference(tmp_path, gt, dt, num_keypoints, mask_scored=True)
    # pycocotools' own default sigmas are COCO's 17; other K need theirs set, here segzoo's default.
    sigmas = None if num_keypoints == 17 else [DEFAULT_KEYPOINT_SIGMA] * num_keypoints
    expected = _pycocotools(gt_path, results["keypoints"], "keypoints", sigmas)
    metrics = _evaluator(gt, dt, num_keypoints).compute()
    got = [metrics[f"keypoint_{k}"] for k in ("ap", "ap50", "ap75", "ap_medium", "ap_large")]
    np.testing.assert_allclose(got, [v if v >= 0 else math.nan for v in expected[:5]])
    assert 0.2 < metrics["keypoint_ap"] < 0.95  # not a trivial 0 or 1
    # Mask AP ranks masks by mask_scores; box AP keeps the box scores (MS R-CNN's evaluation).
    segm = _pycocotools(gt_path, results["segm"], "segm")
    bbox = _pycocotools(gt_path, results["bbox"], "bbox")
    np.testing.assert_allclose(metrics["mask_ap"], segm[0])
    np.testing.assert_allclose(metrics["box_ap"], bbox[0])


def test_mask_scores_change_the_segm_ranking():
    gt, dt = _scene(4)
    with_scores = _evaluator(gt, dt, 4).compute()
    for dets in dt.values():  # mask score = box score: what a model without MaskIoU reports
        dets[:] = [(box, points, score, score) for box, points, score, _ in dets]
    plain = _evaluator(gt, dt, 4).compute()
    assert with_scores["box_ap"] == plain["box_ap"]
    assert with_scores["keypoint_ap"] == plain["keypoint_ap"]
    assert with_scores["mask_ap"] != plain["mask_ap"]


def test_oks_by_hand_sets_the_ap_thresholds():
    """One person, one detection whose every keypoint is d pixels off: OKS = exp(-d^2 / (2 s^2
    (2 sigma)^2)) (COCO's formula; s^2 the area); AP = share of the 10 thresholds <= OKS."""
    sigma, area = DEFAULT_KEYPOINT_SIGMA, 30 * 40
    oks = 0.77
    d = math.sqrt(-math.log(oks) * 2 * area * (2 * sigma) ** 2)
    points = np.asarray([[10, 12, 2], [20, 30, 1], [30, 40, 2], [25, 15, 2]], np.float32)
    guess = points.copy()
    guess[:, 0] += d * 0.6
    guess[:, 1] -= d * 0.8
    evaluator = InstanceEvaluator(category_ids=[1], iou_types=("keypoints",))
    evaluator.add(1, {"boxes": np.float32([[5, 5, 35, 45]]), "classes": np.int32([1]),
                      "masks": rect_mask(5, 5, 35, 45)[None], "keypoints": points[None]},
                  {"boxes": np.float32([[5, 5, 35, 45]]), "scores": np.float32([0.9]),
                   "classes": np.int32([1]), "keypoints": guess[None]})
    metrics = evaluator.compute()
    np.testing.assert_allclose([metrics["keypoint_ap50"], metrics["keypoint_ap75"]], 1.0)
    np.testing.assert_allclose(metrics["keypoint_ap"], 0.6)  # thresholds 0.50 .. 0.75
    assert "keypoint" in evaluator.table() and "keypoint_ap" in evaluator.to_json()


def test_sigmas_default_and_errors():
    from pycocotools.cocoeval import Params

    np.testing.assert_array_equal(COCO_PERSON_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)
    np.testing.assert_array_equal(keypoint_sigmas(17), COCO_PERSON_SIGMAS)
    np.testing.assert_allclose(keypoint_sigmas(4), [0.066941] * 4, atol=1e-6)
    with pytest.raises(ValueError, match="expected 4 positive"):
        keypoint_sigmas(4, [0.1, 0.1])
    evaluator = InstanceEvaluator(iou_types=("keypoints",))
    with pytest.raises(ValueError, match="needs 'keypoints'"):
        evaluator.add(1, {"boxes": np.zeros((0, 4)), "classes": np.zeros(0)}, None,
                      image_size=(8, 8))
