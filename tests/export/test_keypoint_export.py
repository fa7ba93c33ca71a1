"""Keypoints and mask scores in the SavedModel, served by a process that never imports segzoo.

A tiny stand-in detector with keypoint and mask-scoring outputs keeps this in the
default tier; the real keypoint_rcnn / ms_rcnn exports are in the slow tier below.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import segzoo
from segzoo.export import export_saved_model
from tests.export.helpers import encode_png, serve_in_clean_process
from tests.export.keypoint_models import NAMES, TinyKeypointDetector


def test_keypoints_and_mask_scores_are_served_without_segzoo(tmp_path):
    model = TinyKeypointDetector(num_classes=2, category_ids=[5, 9], max_detections=4)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 30, 44, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    expected = {k: keras.ops.convert_to_numpy(v)
                for k, v in model(images.astype(np.float32)).items()}
    alone = {k: keras.ops.convert_to_numpy(v)
             for k, v in model(small[None].astype(np.float32)).items()}
    export = export_saved_model(model, tmp_path / "export", max_detections=2)
    served = serve_in_clean_process(export, images, [encode_png(small), encode_png(images[0])],
                                    tmp_path)
    default, encoded = served["serving_default"], served["serving_bytes"]
    assert set(default) == {"boxes", "scores", "classes", "num_detections", "keypoints",
                            "keypoint_scores", "mask_scores"}  # no masks: keypoint_rcnn has none
    assert default["keypoints"].shape == (2, 2, 3, 3) and default["keypoints"].dtype == np.float32
    assert default["keypoint_scores"].shape == (2, 2, 3) and default["mask_scores"].shape == (2, 2)
    for name in ("keypoints", "keypoint_scores", "mask_scores", "boxes", "scores"):
        np.testing.assert_allclose(default[name], expected[name][:, :2], atol=1e-5)
        np.testing.assert_allclose(encoded[name][0], alone[name][0, :2], atol=1e-5)
    np.testing.assert_array_equal(default["num_detections"], [2, 2])
    assert set(encoded) == set(default) | {"image_sizes"}
    with open(f"{export}/assets/segzoo.json") as f:
        metadata = json.load(f)
    assert metadata["keypoint_names"] == list(NAMES)
    assert metadata["keypoint_skeleton"] == [[0, 1], [0, 2]]
    assert "keypoints" in metadata["signatures"]["serving_default"]["outputs"]
    assert "masks" not in metadata["signatures"]["serving_default"]["outputs"]


@pytest.mark.slow  # traces the detectors, then again in the serving process
@pytest.mark.parametrize("name", ["keypoint_rcnn", "ms_rcnn"])
def test_real_branch_models_are_served_equal_to_keras(tmp_path, name):
    if name not in segzoo.list_models():
        pytest.skip(f"{name} is not registered yet")
    kwargs = {"num_keypoints": 4} if name == "keypoint_rcnn" else {}
    model = segzoo.get_model(name, num_classes=2, backbone="resnet18", min_size=64, max_size=96,
                             max_detections=6, box_score_threshold=0.0, **kwargs)
    image = np.random.default_rng(1).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    expected = {k: keras.ops.convert_to_numpy(v)
                for k, v in model(image.astype(np.float32)).items()}
    export = export_saved_model(model, tmp_path / "export")
    served = serve_in_clean_process(export, image, [encode_png(image[0])], tmp_path)
    default = served["serving_default"]
    n = int(expected["num_detections"][0])
    assert n > 0 and int(default["num_detections"][0]) == n
    branch = ("keypoints", "keypoint_scores") if name == "keypoint_rcnn" else ("mask_scores",)
    for key in ("boxes", "scores", *branch):
        np.testing.assert_allclose(default[key][0, :n], expected[key][0, :n], atol=1e-3)
        np.testing.assert_allclose(served["serving_bytes"][key][0, :n], expected[key][0, :n],
                                   atol=1e-3)
    if name == "keypoint_rcnn":
        assert default["keypoints"].shape[2:] == (4, 3) and "masks" not in default
    else:
        assert default["masks"].shape[:2] == (1, 6)
