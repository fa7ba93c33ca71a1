"""Mask R-CNN (ResNet-18) exported and served by a process that never imports segzoo.

The served detections must equal in-process inference of the Keras model on
the same pixels: classes (mapped to the dataset's category ids), boxes, scores
and pasted masks; `serving_bytes` runs each image of a mixed-size batch alone.
A score threshold of 0 makes the untrained model return detections, so the
comparison is never vacuous.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.export import export_saved_model
from tests.export.helpers import (
    encode_jpeg,
    encode_png,
    saved_model_cli_show,
    serve_in_clean_process,
)

CATEGORY_IDS = [3, 7, 90]
NAMES = ["background", "cat", "dog", "toothbrush"]
EXPORT_DETECTIONS = 6


def build_model():
    return segzoo.get_model(
        "mask_rcnn", num_classes=3, backbone="resnet18", min_size=64, max_size=96,
        max_detections=10, box_score_threshold=0.0, category_ids=CATEGORY_IDS,
        class_names=NAMES)


def keras_detections(model, images):
    outputs = model(images.astype(np.float32), training=False)
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def assert_same_detections(served, expected, lookup, height, width):
    """served: one image's outputs (may be padded beyond height, width); expected: Keras's."""
    n = min(int(expected["num_detections"]), EXPORT_DETECTIONS)
    assert n > 0, "the comparison needs detections"
    assert int(served["num_detections"]) == n
    np.testing.assert_array_equal(served["classes"][:n], lookup[expected["classes"][:n]])
    assert (served["classes"][n:] == 0).all()
    np.testing.assert_allclose(served["boxes"][:n], expected["boxes"][:n], atol=1e-3)
    np.testing.assert_allclose(served["scores"][:n], expected["scores"][:n], atol=1e-5)
    masks = served["masks"][:n, :height, :width]
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    assert (masks != expected["masks"][:n]).mean() <= 1e-3
    assert (served["masks"][:, height:, :] == 0).all() and (served["masks"][:, :, width:] == 0).all()


@pytest.mark.slow  # traces the whole detector twice, then again in the serving process
def test_mask_rcnn_served_without_segzoo(tmp_path):
    model = build_model()
    export_dir = export_saved_model(model, tmp_path / "mask_rcnn", max_detections=EXPORT_DETECTIONS)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    png = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    jpeg_bytes = encode_jpeg(rng.integers(0, 256, (66, 44, 3), dtype=np.uint8))
    jpeg = tf.io.decode_jpeg(jpeg_bytes, channels=3).numpy()
    served = serve_in_clean_process(export_dir, images, [encode_png(png), jpeg_bytes], tmp_path)
    assert served["segzoo_modules"] == []
    assert served["class_names"] == NAMES[1:] and served["class_names_asset"] == NAMES[1:]
    assert served["category_ids"] == CATEGORY_IDS
    lookup = np.array([0, *CATEGORY_IDS])

    default = served["serving_default"]
    assert default["boxes"].shape == (2, EXPORT_DETECTIONS, 4)
    assert default["masks"].shape == (2, EXPORT_DETECTIONS, 50, 70)
    assert default["classes"].dtype == np.int32 and default["num_detections"].dtype == np.int32
    expected = keras_detections(model, images)
    for i in range(2):
        assert_same_detections({k: v[i] for k, v in default.items()},
                               {k: v[i] for k, v in expected.items()}, lookup, 50, 70)

    encoded = served["serving_bytes"]
    assert encoded["masks"].shape == (2, EXPORT_DETECTIONS, 66, 60)
    np.testing.assert_array_equal(encoded["image_sizes"], [[40, 60], [66, 44]])
    for i, image in enumerate([png, jpeg]):
        expected = keras_detections(model, image[None])
        assert_same_detections({k: v[i] for k, v in encoded.items() if k != "image_sizes"},
                               {k: v[0] for k, v in expected.items()}, lookup, *image.shape[:2])

    show = saved_model_cli_show(export_dir)
    for name in ("boxes", "scores", "classes", "masks", "num_detections", "image_sizes"):
        assert f"outputs['{name}']" in show


def test_mask_rcnn_export_arguments(tmp_path):
    model = build_model()
    with pytest.raises(ValueError, match="exceeds the model's max_detections=10"):
        export_saved_model(model, tmp_path / "a", max_detections=11)
