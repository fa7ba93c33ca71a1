"""The user's commands for Keypoint R-CNN and MS R-CNN (slow tier: real detectors, a few steps).

`segzoo train` (shapes, and a COCO-layout tree with person_keypoints_*.json),
`segzoo eval --json`, `segzoo predict` and `segzoo export`, each as the user
types it, in a subprocess.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segzoo.data.shapes import render
from tests.data.keypoint_fakes import write_shapes_coco

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHORT = ["--epochs", "1", "--steps-per-epoch", "2"]


def segzoo(*args, timeout=1500):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "segzoo", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 112, 3), np.uint8)).save(path)
    return path


def _shapes_image(tmp_path):
    """A shapes image (the data the model trained on): after two steps the box classifier
    already leans to background, so on noise nothing may pass the 0.05 box score threshold."""
    path = tmp_path / "in.png"
    Image.fromarray(render(np.random.default_rng(0), image_size=(96, 112))[0]).save(path)
    return path


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("data", ["shapes", "coco"])
def test_keypoint_rcnn_train_eval_predict_export(tmp_path, data):
    extra = []
    if data == "coco":
        write_shapes_coco(tmp_path / "coco", splits=(("train", 8), ("val", 4)), image_size=96)
        extra = ["--data", "coco", "--data-dir", tmp_path / "coco", "--recipe",
                 "shapes_keypoint_rcnn"]
    run = tmp_path / "run"
    segzoo("train", "keypoint_rcnn", *SHORT, *extra, "--out", run)
    checkpoint = run / "model.keras"
    eval_data = extra[:4] if data == "coco" else []
    result = json.loads(segzoo("eval", "--checkpoint", checkpoint, "--json", "--max-images", 4,
                               *eval_data).strip().splitlines()[-1])
    for key in ("keypoint_ap", "keypoint_ap50", "keypoint_ap75", "box_ap"):
        assert key in result
    assert "mask_ap" not in result  # keypoint_rcnn has no mask branch
    table = segzoo("eval", "--checkpoint", checkpoint, "--max-images", 2, *eval_data)
    assert "keypoint" in table
    out = tmp_path / "pred"
    segzoo("predict", "--checkpoint", checkpoint, _image(tmp_path), "--out", out,
           "--score-threshold", 0)
    detections = json.loads((out / "in.json").read_text())["detections"]
    assert detections and all(len(d["keypoints"]) == 4 for d in detections)
    assert (out / "in_overlay.png").exists()
    segzoo("export", "--checkpoint", checkpoint, "--out", tmp_path / "export")
    metadata = json.loads((tmp_path / "export" / "assets" / "segzoo.json").read_text())
    assert metadata["keypoint_names"] == ["top", "left", "right", "bottom"]
    assert "keypoints" in metadata["signatures"]["serving_default"]["outputs"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ms_rcnn_train_eval_predict_export(tmp_path):
    run = tmp_path / "run"
    segzoo("train", "ms_rcnn", *SHORT, "--out", run)
    log = (run / "train_log.csv").read_text().splitlines()[0]
    assert "maskiou" in log  # the MaskIoU loss is reported
    result = json.loads(segzoo("eval", "--checkpoint", run / "model.keras", "--json",
                               "--max-images", 4).strip().splitlines()[-1])
    assert {"mask_ap", "mask_ap50", "box_ap"} <= set(result)
    out = tmp_path / "pred"
    segzoo("predict", "--checkpoint", run / "model.keras", _shapes_image(tmp_path), "--out", out,
           "--score-threshold", 0)
    detections = json.loads((out / "in.json").read_text())["detections"]
    assert detections and all(np.isfinite(d["mask_score"]) for d in detections)
    assert any(d["mask_score"] != d["score"] for d in detections)  # rescored by the MaskIoU
    segzoo("export", "--checkpoint", run / "model.keras", "--out", tmp_path / "export")
    metadata = json.loads((tmp_path / "export" / "assets" / "segzoo.json").read_text())
    assert "mask_scores" in metadata["signatures"]["serving_default"]["outputs"]
