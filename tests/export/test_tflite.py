"""TFLite export of semantic models, run with tf.lite.Interpreter at sizes chosen after export."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.export import export_tflite
from tests.export.helpers import keras_probabilities
from tests.export.tiny_models import TinySegmenter


def run_tflite(path, image):
    """Resizes the input tensor to `image`'s shape and runs the flatbuffer once."""
    interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape_signature"]) == [-1, -1, -1, 3]
    interpreter.resize_tensor_input(inp["index"], image.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    runner = interpreter.get_signature_runner("serving_default")
    outputs = runner(images=image)  # the signature runner gives the named outputs
    return outputs["labels"], outputs["probabilities"]


def check_tflite(model, path, size, atol):
    image = np.random.default_rng(1).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    labels, probabilities = run_tflite(path, image)
    expected = keras_probabilities(model, image)
    assert labels.shape == image.shape[:3] and labels.dtype == np.int32
    assert (labels == expected.argmax(-1)).mean() >= 0.99
    np.testing.assert_allclose(probabilities, expected, atol=atol)


@pytest.mark.parametrize("quantize, atol", [(None, 1e-4), ("fp16", 2e-2)])
def test_tiny_model_tflite(tmp_path, quantize, atol):
    model = TinySegmenter(num_classes=4)
    path = export_tflite(model, tmp_path / "tiny.tflite", quantize=quantize)
    check_tflite(model, path, (23, 41), atol)
    check_tflite(model, path, (40, 16), atol)


def test_fp16_halves_the_file(tmp_path):
    model = TinySegmenter(num_classes=4, width=64)
    full = export_tflite(model, tmp_path / "full.tflite")
    half = export_tflite(model, tmp_path / "half.tflite", quantize="fp16")
    assert os.path.getsize(half) < 0.7 * os.path.getsize(full)


def test_tflite_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="quantize"):
        export_tflite(TinySegmenter(), tmp_path / "x.tflite", quantize="int3")
    assert not os.path.exists(tmp_path / "x.tflite")


def test_unet_tflite(tmp_path):
    model = segzoo.get_model("unet", num_classes=3, base_filters=8)
    for quantize, atol in ((None, 1e-4), ("fp16", 2e-2)):
        path = export_tflite(model, tmp_path / f"unet_{quantize}.tflite", quantize=quantize)
        check_tflite(model, path, (48, 80), atol)


@pytest.mark.slow
def test_fcn8s_tflite(tmp_path):
    model = segzoo.get_model("fcn8s", num_classes=5)
    for quantize, atol in ((None, 1e-4), ("fp16", 2e-2)):
        path = export_tflite(model, tmp_path / f"fcn8s_{quantize}.tflite", quantize=quantize)
        check_tflite(model, path, (37, 45), atol)
