"""Keypoint / mask-scoring models through the task plumbing: data, targets, evaluation, predict."""

import json

import numpy as np
import pytest

import segzoo
import segzoo.data
from segzoo.evaluation.loops import evaluate_instances
from segzoo.training.instance_task import InstanceTask
from segzoo.training.setup import build_model, resolve_recipe
from tests.export.keypoint_models import NAMES, TinyKeypointDetector

TINY = dict(backbone="resnet18", min_size=64, max_size=64, fpn_channels=32, representation_size=64,
            rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=32, max_detections=5,
            keypoint_head_channels=16, keypoint_head_layers=1)


def test_recipes_and_model_get_the_keypoint_data():
    recipe, _ = resolve_recipe({"model": "keypoint_rcnn"})
    assert recipe.name == "shapes_keypoint_rcnn" and recipe.data_args["keypoints"] is True
    recipe, _ = resolve_recipe({"model": "mask_rcnn", "model_args": {"keypoints": True}})
    assert recipe.name == "shapes_mask_rcnn" and recipe.data_args["keypoints"] is True
    recipe, _ = resolve_recipe({"model": "keypoint_rcnn", "data": "coco"})
    assert recipe.data == "coco" and recipe.data_args == {"keypoints": True}
    recipe, _ = resolve_recipe({"model": "ms_rcnn"})
    assert recipe.name == "shapes_ms_rcnn" and "keypoints" not in recipe.data_args
    info = segzoo.data.get_info("shapes", task="instance", keypoints=True)
    model = build_model("keypoint_rcnn", info, TINY)
    assert model.num_keypoints == 4 and list(model.keypoint_names) == list(info.keypoint_names)
    assert [tuple(p) for p in model.keypoint_skeleton] == list(info.skeleton)


def test_keypoint_task_delivers_keypoint_targets_and_monitors_keypoint_ap():
    info = segzoo.data.get_info("shapes", task="instance", keypoints=True)
    model = build_model("keypoint_rcnn", info, TINY)
    task = InstanceTask(model, data_args={"task": "instance"})
    assert task.monitor == "val_keypoint_ap"
    images, targets = next(iter(task.train_dataset(info, "shapes", None, "train", 64, 2, seed=0)))
    rows = targets["classes"].shape[1]  # the batch's largest instance count (no cap)
    assert targets["keypoints"].shape == (2, rows, 4, 3) and images.shape == (2, 64, 64, 3)
    labelled = targets["keypoints"].numpy()[..., 2]
    classes = targets["classes"].numpy()
    assert (labelled[classes > 0] > 0).all() and not labelled[classes == 0].any()
    assert InstanceTask(segzoo.get_model("ms_rcnn", num_classes=3, **{
        k: v for k, v in TINY.items() if not k.startswith("keypoint")})).monitor == "val_mask_ap"


def _elements(rng, count=3):
    """Images with one or two 'people' of 3 keypoints (K of TinyKeypointDetector)."""
    elements = []
    for i in range(count):
        n = 1 + i % 2
        boxes = np.float32([[2, 3, 20, 18], [10, 10, 30, 26]])[:n]
        points = np.zeros((n, 3, 3), np.float32)
        points[..., 0] = rng.uniform(boxes[:, :1], boxes[:, 2:3], (n, 3))
        points[..., 1] = rng.uniform(boxes[:, 1:2], boxes[:, 3:4], (n, 3))
        points[..., 2] = 2
        masks = np.zeros((n, 28, 32), np.uint8)
        for j, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            masks[j, y1:y2, x1:x2] = 1
        elements.append({"image": rng.integers(0, 256, (28, 32, 3), dtype=np.uint8),
                         "boxes": boxes, "classes": np.ones(n, np.int32), "masks": masks,
                         "is_crowd": np.zeros(n, bool), "keypoints": points, "image_id": i})
    return elements


def test_evaluation_reports_keypoint_ap_and_no_mask_ap_without_masks():
    model = TinyKeypointDetector(num_classes=2, max_detections=4)
    metrics, evaluator = evaluate_instances(model, _elements(np.random.default_rng(0)))
    assert metrics["num_images"] == 3
    for key in ("keypoint_ap", "keypoint_ap50", "keypoint_ap75", "box_ap"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "mask_ap" not in metrics and evaluator.iou_types == ("bbox", "keypoints")
    assert "keypoint" in evaluator.table()


def test_predict_writes_keypoints_and_mask_scores(tmp_path):
    from segzoo.inference.runner import Predictor, write_instances

    model = TinyKeypointDetector(num_classes=2, max_detections=4, class_names=["bg", "a", "b"])
    image = np.random.default_rng(1).integers(0, 256, (28, 32, 3), dtype=np.uint8)
    instances = Predictor(model, score_threshold=0.0).instances(image)
    write_instances(image, instances, "x", str(tmp_path), model)
    saved = json.loads((tmp_path / "x.json").read_text())["detections"]
    assert len(saved) == 3
    out = {k: np.asarray(v)[0] for k, v in model(image[None].astype(np.float32)).items()}
    order = np.argsort(-out["scores"][:3], kind="stable")
    for detection, i in zip(saved, order, strict=True):
        assert len(detection["keypoints"]) == len(NAMES)
        np.testing.assert_allclose(detection["keypoints"], out["keypoints"][i], rtol=1e-5)
        np.testing.assert_allclose(detection["mask_score"], out["mask_scores"][i], rtol=1e-5)
    assert (tmp_path / "x_overlay.png").exists()


def test_keypoint_model_on_data_without_keypoints_is_an_error(monkeypatch):
    info = segzoo.data.get_info("shapes", task="instance", keypoints=True)
    model = build_model("keypoint_rcnn", info, TINY)
    task = InstanceTask(model)
    real_load = segzoo.data.load

    def load_without_keypoints(name, split, data_dir=None, **kwargs):  # a loader ignoring it
        kwargs.pop("keypoints", None)
        return real_load(name, split, data_dir, **kwargs)

    monkeypatch.setattr(segzoo.data, "load", load_without_keypoints)
    with pytest.raises(ValueError, match="has no keypoints"):
        task.train_dataset(info, "shapes", None, "train", 64, 2, seed=0)
