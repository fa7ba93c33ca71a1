"""Mask R-CNN exported to TFLite (builtin ops only) and run in `tf.lite.Interpreter`.

`segzoo export --format tflite` on a Mask R-CNN checkpoint (ResNet-18,
min_size 64, 8 detections, score threshold 0 so the untrained model returns
detections and the comparison is never vacuous) must give the detections of
the Keras model on the same pixels, for shapes images of two sizes through one
interpreter (the input is [-1, -1, -1, 3]).

Tolerances: TFLite runs its own float32 kernels (XNNPACK convolutions, which
sum in another order than TensorFlow's), so features differ by float32
rounding, about 1e-6 relative a layer. Measured on these models: boxes within
9e-4 px, scores within 6e-6, mask IoU >= 0.9993. The checks allow 10x that
(boxes 0.01 px, scores 1e-4), ask for equal classes and padding rows, and mask
IoU >= 0.95 per detection: the masks are pasted at integer box edges, so a box
edge within 0.01 px of a rounding point moves one row or column of a mask, and
a 0.5-threshold pixel may flip; nothing larger may differ. Both masks empty
counts as equal. The weights come from a fixed seed and the images from a
fixed generator, so a near-tie of scores cannot make the test flaky.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.cli import main
from segzoo.data.shapes import render
from segzoo.export import export_tflite

CATEGORY_IDS = [3, 7, 90]
NAMES = ["background", "circle", "rectangle", "triangle"]
DETECTIONS = 8
SIZES = ((88, 120), (100, 70))  # (H, W) of the two shapes images
# Keypoints are pixels like the boxes (decoded in each box, measured within 2.3e-4 px) and
# their scores heatmap logits of magnitude ~10 (within 1e-4 relative): the boxes' 0.01.
EXTRA_ATOL = {"mask_scores": 1e-4, "keypoints": 0.01, "keypoint_scores": 0.01}


def build(name, **kwargs):
    keras.utils.set_random_seed(0)
    return segzoo.get_model(
        name, num_classes=3, backbone="resnet18", min_size=64, max_size=96,
        max_detections=DETECTIONS, box_score_threshold=0.0, category_ids=CATEGORY_IDS,
        class_names=NAMES, **kwargs)


def shapes_image(seed, size):
    image = render(np.random.default_rng(seed), image_size=128)[0]
    return np.ascontiguousarray(image[: size[0], : size[1]])


def mask_iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def check_tflite_detections(model, path, extra=(), masks=True):
    """Runs `path` on two images; asserts it returns `model`'s detections (module doc)."""
    interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    signature = interpreter.get_signature_list()["serving_default"]
    assert signature["inputs"] == ["images"]
    expected_names = {"boxes", "scores", "classes", "num_detections", *extra} | ({"masks"} if masks else set())
    assert set(signature["outputs"]) == expected_names
    (detail,) = interpreter.get_input_details()
    assert detail["dtype"] == np.uint8
    assert list(detail["shape_signature"]) == [-1, -1, -1, 3]
    runner = interpreter.get_signature_runner()
    lookup = np.array([0, *CATEGORY_IDS])
    non_empty = 0
    for seed, (height, width) in enumerate(SIZES):
        image = shapes_image(seed, (height, width))
        served = runner(images=image[None])
        expected = {k: keras.ops.convert_to_numpy(v)
                    for k, v in model(image[None].astype(np.float32), training=False).items()}
        assert served["boxes"].dtype == np.float32 and served["boxes"].shape == (1, DETECTIONS, 4)
        assert served["classes"].dtype == np.int32 and served["num_detections"].dtype == np.int32
        n = int(expected["num_detections"][0])
        assert n >= 4, "the comparison needs detections"
        assert int(served["num_detections"][0]) == n
        np.testing.assert_array_equal(served["classes"][0], lookup[expected["classes"][0]])
        np.testing.assert_allclose(served["boxes"][0], expected["boxes"][0], rtol=0, atol=0.01)
        np.testing.assert_allclose(served["scores"][0], expected["scores"][0], rtol=0, atol=1e-4)
        for name in extra:
            np.testing.assert_allclose(served[name][0], expected[name][0], rtol=0,
                                       atol=EXTRA_ATOL[name])
        if not masks:
            continue
        assert served["masks"].dtype == np.uint8
        assert served["masks"].shape == (1, DETECTIONS, height, width)
        assert set(np.unique(served["masks"])) <= {0, 1}
        for i in range(DETECTIONS):
            got, want = served["masks"][0, i].astype(bool), expected["masks"][0, i].astype(bool)
            assert mask_iou(got, want) >= 0.95, (seed, i, mask_iou(got, want))
            non_empty += int(want.any())
    assert non_empty >= 4 or not masks, "the comparison needs non-empty masks"


@pytest.mark.slow  # converting the detector takes about a minute
def test_segzoo_export_tflite_mask_rcnn(tmp_path, capsys):
    checkpoint = os.fspath(tmp_path / "run" / "model.keras")
    os.makedirs(os.path.dirname(checkpoint))
    build("mask_rcnn").save(checkpoint)
    out = os.fspath(tmp_path / "mask_rcnn.tflite")
    assert main(["export", "--checkpoint", checkpoint, "--out", out, "--format", "tflite"]) == 0
    assert out in capsys.readouterr().out
    model = keras.saving.load_model(checkpoint, safe_mode=True)
    check_tflite_detections(model, out)


@pytest.mark.slow  # converting the detector takes about a minute
def test_ms_rcnn_tflite_has_mask_scores(tmp_path):
    model = build("ms_rcnn")
    path = export_tflite(model, tmp_path / "ms_rcnn.tflite")
    check_tflite_detections(model, path, extra=("mask_scores",))


def test_instance_tflite_arguments(tmp_path):
    model = build("mask_rcnn")
    with pytest.raises(ValueError, match="quantize='int8' applies to semantic models"):
        export_tflite(model, tmp_path / "m.tflite", quantize="int8",
                      representative_dataset=lambda: iter(()))
    with pytest.raises(ValueError, match="exceeds the model's max_detections=8"):
        export_tflite(model, tmp_path / "m.tflite", max_detections=9)
    assert not os.path.exists(tmp_path / "m.tflite")


@pytest.mark.slow  # converting the detector takes about a minute
def test_keypoint_rcnn_tflite_keypoints(tmp_path):
    model = build("keypoint_rcnn", num_keypoints=4)
    path = export_tflite(model, tmp_path / "k.tflite")
    # keypoints [1, N, K, 3] (x, y in input pixels, score) and keypoint_scores [1, N, K].
    check_tflite_detections(model, path, extra=("keypoints", "keypoint_scores"), masks=False)

