"""Evaluation pictures: the numbers drawn equal COCOeval's / FCN's, the PNGs are written."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from segzoo.evaluation.instance import InstanceEvaluator
from segzoo.evaluation.plots import (
    ap_by_size,
    area_ranges,
    confusion_matrix_figure,
    figure_to_rgb,
    normalized_confusion,
    precision_recall_curves,
    write_instance_plots,
    write_semantic_plots,
)

NAMES = ["background", "circle", "rectangle", "triangle"]


def test_normalized_confusion_rows_sum_to_one():
    hist = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    matrix = normalized_confusion(hist)
    np.testing.assert_allclose(matrix[:2], [[0.8, 0.2, 0.0], [0.25, 0.75, 0.0]])
    assert np.isnan(matrix[2]).all()  # a class never labelled


def test_semantic_plots_are_written_with_class_names(tmp_path):
    hist = np.random.default_rng(0).integers(0, 100, (4, 4)) + np.diag([900, 500, 300, 10])
    paths = write_semantic_plots(str(tmp_path), hist, NAMES)
    assert [os.path.basename(p) for p in paths] == ["confusion_matrix.png", "per_class_iou.png"]
    for path in paths:
        image = Image.open(path)
        assert image.format == "PNG" and min(image.size) > 200
    figure = confusion_matrix_figure(hist, NAMES)
    labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert labels == NAMES
    pixels = figure_to_rgb(figure)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no partial files left


@pytest.fixture(scope="module")
def evaluator():
    rng = np.random.default_rng(0)
    evaluator = InstanceEvaluator(category_ids=[1, 5, 9], class_names=NAMES)
    for image_id in range(10):
        masks, boxes = np.zeros((5, 128, 128), np.uint8), []
        for i in range(5):
            size = int(rng.integers(4, 110))
            y, x = (int(v) for v in rng.integers(0, 128 - size, 2))
            masks[i, y:y + size, x:x + size] = 1
            boxes.append([x, y, x + size, y + size])
        classes = rng.integers(1, 4, 5)
        shifted = np.roll(masks, int(rng.integers(0, 4)), axis=2)
        evaluator.add(image_id, {"boxes": np.float32(boxes), "classes": classes, "masks": masks},
                      {"boxes": np.float32(boxes) + rng.normal(0, 3, (5, 4)).astype(np.float32),
                       "scores": rng.random(5), "masks": shifted,
                       "classes": np.where(rng.random(5) < 0.8, classes, rng.integers(1, 4, 5))})
    evaluator.compute()
    return evaluator


def test_pr_curves_and_ap_by_size_equal_cocoeval_summary(evaluator):
    for prefix in ("box", "mask"):
        coco_eval = evaluator.coco_evals[prefix]
        curves = precision_recall_curves(coco_eval)
        assert list(curves) == NAMES[1:]
        for iou, stat in ((0.5, 1), (0.75, 2)):
            aps = [curves[name][iou][2] for name in curves]
            assert np.nanmean(aps) == pytest.approx(coco_eval.stats[stat], abs=1e-12)
        recall, precision, _ = curves["circle"][0.5]
        assert recall.shape == precision.shape == (101,)
        sizes = ap_by_size(coco_eval)
        for size, stat in (("small", 3), ("medium", 4), ("large", 5)):
            want = coco_eval.stats[stat]
            got = sizes["all"][size]
            assert (np.isnan(got) and want == -1) or got == pytest.approx(want, abs=1e-12)
        per_class = evaluator.compute()[f"per_class_{prefix}_ap"]
        for name in NAMES[1:]:  # AP over IoU 0.5:0.95 per class, as the evaluator's table
            values = coco_eval.eval["precision"][:, :, NAMES[1:].index(name), 0, -1]
            assert per_class[name] == pytest.approx(values[values > -1].mean())


def test_instance_plots_are_written(evaluator, tmp_path):
    paths = write_instance_plots(str(tmp_path), evaluator.coco_evals)
    assert sorted(os.path.basename(p) for p in paths) == [
        "box_ap_by_size.png", "box_pr_curves.png", "mask_ap_by_size.png", "mask_pr_curves.png"]
    for path in paths:
        assert Image.open(path).format == "PNG"


def test_keypoint_plots_use_the_keypoint_area_ranges(tmp_path):
    # COCO's keypoint evaluation has no "small" range: AP by size is medium / large, equal to
    # COCOeval's APm / APl (stats[3], stats[4]); training ends with these plots for Keypoint R-CNN.
    rng = np.random.default_rng(1)
    evaluator = InstanceEvaluator(category_ids=[1], class_names=["background", "person"],
                                  iou_types=("bbox", "keypoints"))
    for image_id in range(6):
        size = int(rng.integers(40, 120))
        boxes = np.float32([[4, 4, 4 + size, 4 + size]])
        points = np.concatenate([rng.uniform(4, 4 + size, (1, 4, 2)), np.full((1, 4, 1), 2.0)],
                                axis=-1).astype(np.float32)
        found = points.copy()
        found[..., :2] += rng.normal(0, 2, (1, 4, 2)).astype(np.float32)
        evaluator.add(image_id, {"boxes": boxes, "classes": np.int32([1]), "keypoints": points},
                      {"boxes": boxes, "classes": np.int32([1]), "scores": np.float32([0.9]),
                       "keypoints": found}, image_size=(128, 128))
    evaluator.compute()
    coco_eval = evaluator.coco_evals["keypoint"]
    assert area_ranges(coco_eval) == ("medium", "large")
    sizes = ap_by_size(coco_eval)["all"]
    assert set(sizes) == {"medium", "large"}
    for size, stat in (("medium", 3), ("large", 4)):
        want = coco_eval.stats[stat]
        assert (np.isnan(sizes[size]) and want == -1) or sizes[size] == pytest.approx(want, abs=1e-12)
    paths = write_instance_plots(str(tmp_path), evaluator.coco_evals)
    assert {os.path.basename(p) for p in paths} >= {"keypoint_ap_by_size.png", "keypoint_pr_curves.png"}
