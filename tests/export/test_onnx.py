"""`segzoo export --format onnx`: semantic models run in onnxruntime, probabilities within 1e-4."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import segzoo
from segzoo.cli import main
from tests.export.helpers import keras_probabilities
from tests.export.tiny_models import TinyDetector

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


def run_onnx(path, images):
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images" and inp.type == "tensor(uint8)" and len(inp.shape) == 4
    assert all(not isinstance(d, int) for d in inp.shape[:3])  # B, H, W dynamic
    labels, probabilities = session.run(["labels", "probabilities"], {"images": images})
    return labels, probabilities


def check_onnx(model, path, sizes):
    rng = np.random.default_rng(3)
    for batch, height, width in sizes:
        images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
        labels, probabilities = run_onnx(path, images)
        expected = keras_probabilities(model, images)
        assert labels.dtype == np.int32 and labels.shape == (batch, height, width)
        assert probabilities.dtype == np.float32 and probabilities.shape == expected.shape
        np.testing.assert_allclose(probabilities, expected, atol=1e-4)
        assert (labels == expected.argmax(-1)).mean() >= 0.999


def test_cli_exports_unet_to_onnx(tmp_path, capsys):
    model = segzoo.get_model("unet", num_classes=3, base_filters=8, class_names=["bg", "a", "b"])
    checkpoint = os.fspath(tmp_path / "model.keras")
    model.save(checkpoint)
    out = tmp_path / "unet.onnx"
    assert main(["export", "--checkpoint", checkpoint, "--out", os.fspath(out),
                 "--format", "onnx"]) == 0
    assert "as onnx" in capsys.readouterr().out
    # Sizes not a multiple of U-Net's 16 (padded and cropped back inside the graph).
    check_onnx(model, out, [(1, 40, 56), (2, 33, 17)])
    proto = onnx.load(os.fspath(out))
    onnx.checker.check_model(proto)
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["segzoo_task"] == "semantic"
    assert json.loads(metadata["segzoo_class_names"]) == ["bg", "a", "b"]


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs, sizes", [
    ("unet", {"base_filters": 8, "padding": "valid"}, [(1, 40, 56), (1, 200, 100)]),
    ("fcn8s", {}, [(1, 64, 48)]),
])
def test_onnx_matches_keras(tmp_path, name, kwargs, sizes):
    from segzoo.export.onnx import export_onnx

    model = segzoo.get_model(name, num_classes=3, **kwargs)
    for kernel in model.trainable_weights:  # FCN's score layers start at zero: give them values
        if len(kernel.shape) == 4 and not np.any(np.asarray(kernel)):
            kernel.assign(np.random.default_rng(0).normal(0, 0.01, kernel.shape))
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    check_onnx(model, path, sizes)


def test_instance_models_are_refused_with_the_blocker(tmp_path):
    from segzoo.export.onnx import export_onnx

    with pytest.raises(ValueError, match="ONNX export is for semantic models only"):
        export_onnx(TinyDetector(num_classes=2), tmp_path / "det.onnx")
    assert not os.path.exists(tmp_path / "det.onnx")
