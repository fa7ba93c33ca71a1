"""SavedModel export: both signatures served by a process that never imports segzoo.

Every check compares the served outputs with the Keras model run in this
process on the same pixels: probabilities within 1e-4, labels equal to their
argmax, each image of a mixed-size `serving_bytes` batch equal to the model on
that image alone.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.export import export_saved_model
from tests.export.helpers import (
    encode_jpeg,
    encode_png,
    keras_probabilities,
    saved_model_cli_show,
    serve_in_clean_process,
)
from tests.export.tiny_models import TinyDetector, TinySegmenter


def check_semantic_export(model, export_dir, tmp_path, batch_size, sizes):
    """Serves `export_dir` in a clean process and compares with `model`.

    sizes: three (H, W): the serving_default batch size, then one PNG and one JPEG
    image for serving_bytes (different sizes, so the batch is padded).
    """
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, *sizes[0], 3), dtype=np.uint8)
    png = rng.integers(0, 256, (*sizes[1], 3), dtype=np.uint8)
    jpeg_bytes = encode_jpeg(rng.integers(0, 256, (*sizes[2], 3), dtype=np.uint8))
    jpeg = tf.io.decode_jpeg(jpeg_bytes, channels=3).numpy()  # what the server decodes
    served = serve_in_clean_process(export_dir, images, [encode_png(png), jpeg_bytes], tmp_path)
    assert served["segzoo_modules"] == []
    assert served["signatures"] == ["serving_bytes", "serving_default"]
    assert served["class_names"] == list(model.class_names)
    assert served["class_names_asset"] == list(model.class_names)

    default = served["serving_default"]
    expected = keras_probabilities(model, images)
    assert default["labels"].dtype == np.int32 and default["labels"].shape == images.shape[:3]
    assert default["probabilities"].dtype == np.float32
    np.testing.assert_allclose(default["probabilities"], expected, atol=1e-4)
    assert (default["labels"] == expected.argmax(-1)).mean() >= 0.999

    encoded = served["serving_bytes"]
    max_h, max_w = max(sizes[1][0], sizes[2][0]), max(sizes[1][1], sizes[2][1])
    assert encoded["labels"].shape == (2, max_h, max_w)
    np.testing.assert_array_equal(encoded["image_sizes"], [sizes[1], sizes[2]])
    for i, image in enumerate([png, jpeg]):
        h, w = image.shape[:2]
        expected = keras_probabilities(model, image[None])[0]
        np.testing.assert_allclose(encoded["probabilities"][i, :h, :w], expected, atol=1e-4)
        assert (encoded["labels"][i, :h, :w] == expected.argmax(-1)).mean() >= 0.999
        assert (encoded["labels"][i, h:, :] == -1).all() and (encoded["labels"][i, :, w:] == -1).all()
        assert (encoded["probabilities"][i, h:] == 0).all()
    return served


def test_tiny_semantic_model_served_without_segzoo(tmp_path):
    model = TinySegmenter(num_classes=3, class_names=["background", "square", "disc"])
    export_dir = export_saved_model(model, tmp_path / "export")
    with open(os.path.join(export_dir, "assets", "segzoo.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["task"] == "semantic" and metadata["class_names"][1] == "square"
    check_semantic_export(model, export_dir, tmp_path, 2, [(20, 36), (26, 18), (15, 31)])
    show = saved_model_cli_show(export_dir)
    for expected in ("signature_def['serving_default']", "signature_def['serving_bytes']",
                     "inputs['images']", "inputs['image_bytes']", "outputs['labels']",
                     "outputs['probabilities']", "outputs['image_sizes']"):
        assert expected in show, expected
    assert "DT_UINT8" in show and "(-1, -1, -1, 3)" in show


def test_serving_layout_and_atomic_replacement(tmp_path, monkeypatch):
    model = TinySegmenter(num_classes=2, name="tiny")
    path = export_saved_model(model, tmp_path / "serving", serving_layout=True, version=3)
    assert path == os.fspath(tmp_path / "serving" / "tiny" / "3")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))

    # Re-export over an existing export: the new one replaces it whole ...
    other = TinySegmenter(num_classes=2, class_names=["x", "y"], name="tiny")
    export_saved_model(other, tmp_path / "serving", serving_layout=True, version=3)
    with open(os.path.join(path, "assets", "class_names.txt"), encoding="utf-8") as f:
        assert f.read().splitlines() == ["x", "y"]

    # ... and a failing export leaves the old one untouched and no staging behind.
    def broken_save(*args, **kwargs):
        os.makedirs(args[1])
        with open(os.path.join(args[1], "saved_model.pb"), "wb") as f:
            f.write(b"half written")
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        export_saved_model(TinySegmenter(num_classes=2, name="tiny"), tmp_path / "serving",
                           serving_layout=True, version=3)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path / "serving" / "tiny")) == ["3"]
    assert tf.saved_model.load(path).class_names().numpy().tolist() == [b"x", b"y"]


def test_export_rejects_bad_arguments(tmp_path):
    model = TinySegmenter(num_classes=2)
    with pytest.raises(ValueError, match="instance models only"):
        export_saved_model(model, tmp_path / "a", max_detections=5)
    with pytest.raises(ValueError, match="segzoo model"):
        export_saved_model(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "b")
    with pytest.raises(ValueError, match="version"):
        export_saved_model(model, tmp_path / "c", serving_layout=True, version=0)
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


# === Real models ===


def test_unet_export_served_without_segzoo(tmp_path):
    model = segzoo.get_model("unet", num_classes=3, base_filters=8)
    export_dir = export_saved_model(model, tmp_path / "unet")
    served = check_semantic_export(model, export_dir, tmp_path, 2,
                                   [(48, 80), (64, 32), (32, 48)])
    assert served["class_names"] == ["class_0", "class_1", "class_2"]


@pytest.mark.slow
def test_fcn8s_export_served_without_segzoo(tmp_path):
    model = segzoo.get_model("fcn8s", num_classes=5)
    export_dir = export_saved_model(model, tmp_path / "fcn8s")
    check_semantic_export(model, export_dir, tmp_path, 1, [(40, 56), (37, 45), (30, 50)])
    assert "signature_def['serving_bytes']" in saved_model_cli_show(export_dir)


def test_instance_contract_served_without_segzoo(tmp_path):
    model = TinyDetector(num_classes=3, category_ids=[3, 7, 90],
                         class_names=["background", "cat", "dog", "toothbrush"])
    export_dir = export_saved_model(model, tmp_path / "detector", max_detections=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    served = serve_in_clean_process(export_dir, images, [encode_png(images[0]), encode_png(small)],
                                    tmp_path)
    assert served["class_names"] == ["cat", "dog", "toothbrush"]
    assert served["category_ids"] == [3, 7, 90]
    expected = {k: keras.ops.convert_to_numpy(v)
                for k, v in model(images.astype(np.float32)).items()}
    default = served["serving_default"]
    np.testing.assert_array_equal(default["num_detections"], [2, 2])  # min(3, max_detections)
    np.testing.assert_array_equal(default["classes"], [[3, 7], [3, 7]])  # ids 1, 2 -> 3, 7
    np.testing.assert_allclose(default["boxes"], expected["boxes"][:, :2], atol=1e-6)
    np.testing.assert_allclose(default["scores"], expected["scores"][:, :2], atol=1e-6)
    np.testing.assert_array_equal(default["masks"], expected["masks"][:, :2])
    assert default["masks"].dtype == np.uint8 and default["masks"].sum() > 0

    encoded = served["serving_bytes"]
    np.testing.assert_array_equal(encoded["image_sizes"], [[20, 30], [12, 16]])
    np.testing.assert_array_equal(encoded["masks"][0], default["masks"][0])
    alone = keras.ops.convert_to_numpy(model(small[None].astype(np.float32))["masks"])[0, :2]
    np.testing.assert_array_equal(encoded["masks"][1, :, :12, :16], alone)
    assert (encoded["masks"][1, :, 12:] == 0).all() and (encoded["masks"][1, :, :, 16:] == 0).all()
    np.testing.assert_allclose(encoded["boxes"][1], [[0, 0, 8, 6], [4, 3, 16, 12]], atol=1e-6)
