"""`segzoo export --format tflite --quantize int8 --calibration-data NAME[:split]`:
full-integer post-training quantisation calibrated on a segzoo dataset, run in tf.lite.Interpreter."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.cli import main
from segzoo.export import export_checkpoint
from segzoo.export.quantize import parse_dataset_split, representative_dataset, tflite_agreement
from tests.export.tiny_models import TinySegmenter


def _quantised_ops(path) -> dict:
    """{op name: set of its input tensor dtypes} of a .tflite file (the analyzer's view)."""
    interpreter = tf.lite.Interpreter(model_path=os.fspath(path))
    tensors = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    ops = {}
    for op in interpreter._get_ops_details():
        ops.setdefault(op["op_name"], set()).update(
            np.dtype(tensors[i]).name for i in op["inputs"] if i >= 0)
    return ops


def test_cli_int8_export_runs_in_the_interpreter_and_agrees(tmp_path, capsys):
    model = TinySegmenter(num_classes=3, width=8)
    checkpoint = os.fspath(tmp_path / "model.keras")
    model.save(checkpoint)
    out = tmp_path / "tiny_int8.tflite"
    assert main(["export", "--checkpoint", checkpoint, "--out", os.fspath(out),
                 "--format", "tflite", "--quantize", "int8", "--calibration-data", "shapes:train",
                 "--calibration-images", "8"]) == 0
    assert "as tflite" in capsys.readouterr().out
    interpreter = tf.lite.Interpreter(model_path=os.fspath(out))
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape_signature"]) == [-1, -1, -1, 3]
    ops = _quantised_ops(out)
    # Full integer: every convolution reads int8 activations and int8 weights.
    assert ops["CONV_2D"] == {"int8", "int32"}  # int32: the bias
    assert "float32" not in set().union(*(v for k, v in ops.items()
                                          if k not in ("QUANTIZE", "DEQUANTIZE", "CAST")))
    result = tflite_agreement(model, out, "shapes:val", max_images=4)
    assert result["images"] == 4
    assert result["pixel_agreement"] >= 0.9, result
    assert abs(result["mean_iou_tflite"] - result["mean_iou_float32"]) <= 0.05, result


def test_calibration_data_errors(tmp_path):
    model = TinySegmenter(num_classes=3)
    checkpoint = os.fspath(tmp_path / "model.keras")
    model.save(checkpoint)
    out = os.fspath(tmp_path / "m.tflite")
    with pytest.raises(ValueError, match=r"quantize='int8' needs calibration_data='NAME\[:split\]'"):
        export_checkpoint(checkpoint, out, format="tflite", quantize="int8")
    with pytest.raises(ValueError, match="calibration_data applies to quantize='int8' only"):
        export_checkpoint(checkpoint, out, format="tflite", calibration_data="shapes")
    with pytest.raises(ValueError, match="'shapes' has no split 'nosuch'"):
        export_checkpoint(checkpoint, out, format="tflite", quantize="int8",
                          calibration_data="shapes:nosuch")
    with pytest.raises(ValueError, match="calibration_images must be >= 1, got 0"):
        export_checkpoint(checkpoint, out, format="tflite", quantize="int8",
                          calibration_data="shapes", calibration_images=0)
    with pytest.raises(ValueError, match="Unknown dataset 'shapez'"):
        representative_dataset("shapez:train")
    assert parse_dataset_split("shapes")[:2] == ("shapes", "train")
    assert not os.path.exists(out)
    batches = list(representative_dataset("shapes:val", num_images=2)())
    assert len(batches) == 2 and batches[0][0].dtype == np.uint8 and batches[0][0].shape[0] == 1


@pytest.mark.slow
def test_unet_int8_agreement_on_shapes(tmp_path):
    from segzoo.export.tflite import export_tflite

    model = segzoo.get_model("unet", num_classes=3, base_filters=8)
    path = export_tflite(model, tmp_path / "unet_int8.tflite", quantize="int8",
                         representative_dataset=representative_dataset("shapes:train",
                                                                       num_images=16))
    result = tflite_agreement(model, path, "shapes:val", max_images=8)
    assert result["pixel_agreement"] >= 0.9, result
