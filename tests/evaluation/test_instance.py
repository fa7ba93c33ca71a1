"""InstanceEvaluator against pycocotools run directly on hand-written COCO JSON files.

The reference files are written by hand in the tests (rectangle masks as
uncompressed column-major RLE counts computed here, not by the evaluator's
encoder), then COCOeval runs on them exactly as the COCO toolkit's own
example does; the evaluator fed the same instances as numpy arrays must give
the same numbers.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segzoo.evaluation.instance import InstanceEvaluator, encode_masks

H, W = 60, 80


def rect_mask(x1, y1, x2, y2, h=H, w=W):
    mask = np.zeros((h, w), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def rect_rle_counts(x1, y1, x2, y2, h=H, w=W):
    """Uncompressed COCO RLE of a rectangle, computed by hand (column-major runs)."""
    counts, zeros = [], x1 * h + y1
    for column in range(x1, x2):
        counts += [zeros, y2 - y1]
        zeros = h - (y2 - y1)
        if column == x2 - 1:
            zeros = h - y2 + (w - x2) * h
    counts.append(zeros)
    return {"counts": counts, "size": [h, w]}


def test_rect_rle_counts_matches_numpy_fortran_runs():
    rle = rect_rle_counts(3, 5, 7, 9)
    flat = rect_mask(3, 5, 7, 9).flatten(order="F")
    decoded = np.repeat(np.arange(len(rle["counts"])) % 2, rle["counts"])
    np.testing.assert_array_equal(decoded, flat)
    assert mask_utils.decode(encode_masks(rect_mask(3, 5, 7, 9)[None])[0]).sum() == 16


# One scene: images, GT objects and detections as rectangles (x1, y1, x2, y2).
# Non-contiguous category ids 3, 7, 90 for contiguous classes 1, 2, 3.
CATEGORY_IDS = [3, 7, 90]
NAMES = ["cat", "dog", "toothbrush"]
GT = {  # image_id: [(class, rect, is_crowd)]
    11: [(1, (10, 10, 40, 40), False), (2, (45, 5, 75, 55), False)],
    12: [(3, (5, 5, 15, 15), False), (1, (20, 20, 70, 58), True)],  # crowd region
    13: [],  # a negative image
    14: [(2, (0, 0, 80, 60), False), (1, (30, 30, 36, 38), False)],
}
DT = {  # image_id: [(class, rect, score)]
    11: [(1, (12, 10, 42, 40), 0.9), (2, (45, 5, 75, 45), 0.8), (3, (0, 0, 8, 8), 0.3)],
    12: [(3, (6, 5, 16, 15), 0.7), (1, (25, 25, 60, 50), 0.95)],  # det inside the crowd
    13: [(2, (10, 10, 30, 30), 0.6)],
    14: [],  # missed everything
}


def write_reference_files(tmp_path):
    images = [{"id": i, "height": H, "width": W, "file_name": f"{i}.jpg"} for i in GT]
    annotations, next_id = [], 1
    for image_id, objects in GT.items():
        for cls, (x1, y1, x2, y2), crowd in objects:
            annotations.append({
                "id": next_id, "image_id": image_id, "category_id": CATEGORY_IDS[cls - 1],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(crowd), "segmentation": rect_rle_counts(x1, y1, x2, y2)})
            next_id += 1
    categories = [{"id": c, "name": n} for c, n in zip(CATEGORY_IDS, NAMES, strict=True)]
    gt_path = tmp_path / "instances_val.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations,
                                   "categories": categories}))
    box_results, segm_results = [], []
    for image_id, dets in DT.items():
        for cls, (x1, y1, x2, y2), score in dets:
            box_results.append({"image_id": image_id, "category_id": CATEGORY_IDS[cls - 1],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
            rle = mask_utils.frPyObjects(rect_rle_counts(x1, y1, x2, y2), H, W)
            rle["counts"] = rle["counts"].decode("ascii")
            segm_results.append({"image_id": image_id, "category_id": CATEGORY_IDS[cls - 1],
                                 "segmentation": rle, "score": score})
    (tmp_path / "bbox.json").write_text(json.dumps(box_results))
    (tmp_path / "segm.json").write_text(json.dumps(segm_results))
    return gt_path


def reference_stats(tmp_path, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "instances_val.json"))
        coco_dt = coco_gt.loadRes(str(tmp_path / f"{iou_type}.json"))
        evaluator = COCOeval(coco_gt, coco_dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def arrays_for(image_id):
    gt_objects, dets = GT[image_id], DT[image_id]
    gt = {
        "boxes": np.array([r for _, r, _ in gt_objects], np.float32).reshape(-1, 4),
        "classes": np.array([c for c, _, _ in gt_objects], np.int32),
        "masks": np.array([rect_mask(*r) for _, r, _ in gt_objects], np.uint8).reshape(-1, H, W),
        "is_crowd": np.array([k for _, _, k in gt_objects], bool),
    }
    detections = {
        "boxes": np.array([r for _, r, _ in dets], np.float32).reshape(-1, 4),
        "scores": np.array([s for _, _, s in dets], np.float32),
        "classes": np.array([c for c, _, _ in dets], np.int32),
        "masks": np.array([rect_mask(*r) for _, r, _ in dets], np.uint8).reshape(-1, H, W),
    }
    return gt, detections


KEYS = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"]


def assert_matches_reference(metrics, tmp_path):
    for iou_type, prefix in (("bbox", "box"), ("segm", "mask")):
        stats = reference_stats(tmp_path, iou_type)
        for index, key in enumerate(KEYS):
            expected = float("nan") if stats[index] < 0 else stats[index]
            np.testing.assert_allclose(metrics[f"{prefix}_{key}"], expected, rtol=1e-12,
                                       err_msg=f"{prefix}_{key}")


def test_matches_pycocotools_on_hand_written_json(tmp_path):
    write_reference_files(tmp_path)
    evaluator = InstanceEvaluator(category_ids=CATEGORY_IDS, class_names=NAMES)
    for image_id in GT:
        evaluator.add(image_id, *arrays_for(image_id))
    metrics = evaluator.compute()
    assert_matches_reference(metrics, tmp_path)
    # The scene is imperfect, so the numbers are strictly between 0 and 1.
    assert 0.0 < metrics["box_ap"] < 1.0 and 0.0 < metrics["mask_ap"] < 1.0
    assert set(metrics["per_class_mask_ap"]) == set(NAMES)
    table = evaluator.table()
    assert "APs" in table and "toothbrush" in table


def test_from_coco_json_matches_pycocotools(tmp_path):
    gt_path = write_reference_files(tmp_path)
    evaluator = InstanceEvaluator.from_coco_json(gt_path)
    assert evaluator.category_ids == CATEGORY_IDS and evaluator.class_names == NAMES
    for image_id in GT:
        evaluator.add(image_id, None, arrays_for(image_id)[1])
    assert_matches_reference(evaluator.compute(), tmp_path)


def test_model_class_names_with_background_are_accepted():
    evaluator = InstanceEvaluator(CATEGORY_IDS, ["background"] + NAMES)
    assert evaluator.class_names == NAMES


def test_perfect_detections_give_one():
    evaluator = InstanceEvaluator(category_ids=CATEGORY_IDS)
    for image_id in GT:
        gt, _ = arrays_for(image_id)
        detections = {"boxes": gt["boxes"], "classes": gt["classes"], "masks": gt["masks"],
                      "scores": np.linspace(0.9, 0.5, len(gt["classes"])).astype(np.float32)}
        evaluator.add(image_id, gt, detections)
    metrics = evaluator.compute()
    for prefix in ("box", "mask"):
        for key in ("ap", "ap50", "ap75"):
            assert metrics[f"{prefix}_{key}"] == pytest.approx(1.0)


def test_shifted_box_hand_computed_ap():
    # GT [0, 0, 10, 10], detection shifted by 2 px: IoU = 80 / 120 = 0.667, so it is a
    # true positive at the thresholds 0.50, 0.55, 0.60, 0.65 only: AP = 4 / 10.
    gt = {"boxes": np.array([[0, 0, 10, 10]], np.float32), "classes": np.array([1]),
          "masks": rect_mask(0, 0, 10, 10)[None]}
    det = {"boxes": np.array([[2, 0, 12, 10]], np.float32), "classes": np.array([1]),
           "scores": np.array([0.9], np.float32), "masks": rect_mask(2, 0, 12, 10)[None]}
    evaluator = InstanceEvaluator()
    evaluator.add(1, gt, det)
    metrics = evaluator.compute()
    for prefix in ("box", "mask"):
        assert metrics[f"{prefix}_ap"] == pytest.approx(0.4)
        assert metrics[f"{prefix}_ap50"] == pytest.approx(1.0)
        assert metrics[f"{prefix}_ap75"] == pytest.approx(0.0)
        assert metrics[f"{prefix}_ap_small"] == pytest.approx(0.4)  # area 100 < 32^2
        # No GT of medium / large size: COCOeval's -1 becomes nan.
        assert math.isnan(metrics[f"{prefix}_ap_medium"])
        assert math.isnan(metrics[f"{prefix}_ap_large"])
    assert "    -" in evaluator.table()


def test_no_detections_give_zero_and_negatives_work():
    evaluator = InstanceEvaluator(category_ids=CATEGORY_IDS)
    empty = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros((0,), np.float32),
             "classes": np.zeros((0,), np.int32), "masks": np.zeros((0, H, W), np.uint8)}
    for image_id in GT:
        evaluator.add(image_id, arrays_for(image_id)[0], empty)
    metrics = evaluator.compute()
    assert metrics["box_ap"] == 0.0 and metrics["mask_ap"] == 0.0
    assert metrics["mask_ap50"] == 0.0


def test_crowd_region_swallows_detections_inside_it():
    gt = {"boxes": np.array([[5, 5, 20, 20], [30, 10, 70, 50]], np.float32),
          "classes": np.array([1, 1]), "is_crowd": np.array([False, True]),
          "masks": np.stack([rect_mask(5, 5, 20, 20), rect_mask(30, 10, 70, 50)])}
    # A perfect detection of the object and a higher scoring one inside the crowd.
    det = {"boxes": np.array([[5, 5, 20, 20], [35, 15, 50, 30]], np.float32),
           "classes": np.array([1, 1]), "scores": np.array([0.8, 0.95], np.float32),
           "masks": np.stack([rect_mask(5, 5, 20, 20), rect_mask(35, 15, 50, 30)])}
    crowd = InstanceEvaluator()
    crowd.add(1, gt, det)
    assert crowd.compute()["mask_ap"] == pytest.approx(1.0)
    assert crowd.compute()["box_ap"] == pytest.approx(1.0)
    not_crowd = InstanceEvaluator()
    not_crowd.add(1, dict(gt, is_crowd=np.array([False, False])), det)
    assert not_crowd.compute()["mask_ap"] < 0.6


def test_bad_input_errors():
    evaluator = InstanceEvaluator(category_ids=CATEGORY_IDS)
    gt, det = arrays_for(11)
    with pytest.raises(ValueError, match="outside 1..3"):
        evaluator.add(1, dict(gt, classes=np.array([1, 4])), det)
    evaluator = InstanceEvaluator(category_ids=CATEGORY_IDS)
    evaluator.add(11, gt, det)
    with pytest.raises(ValueError, match="added twice"):
        evaluator.add(11, gt, det)
    with pytest.raises(ValueError, match="shape"):
        InstanceEvaluator().add(2, gt, dict(det, masks=det["masks"][:, :10]))
    with pytest.raises(ValueError, match="no images"):
        InstanceEvaluator().compute()
    with pytest.raises(ValueError, match="class_names"):
        InstanceEvaluator(CATEGORY_IDS, ["a", "b"])
