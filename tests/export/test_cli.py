"""`segzoo export` on checkpoints: untrained models, formats, and the errors a user can cause."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.cli import main
from segzoo.export import export_checkpoint
from tests.export.tiny_models import TinySegmenter


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    path = os.fspath(tmp_path / "run" / "model.keras")
    os.makedirs(os.path.dirname(path))
    TinySegmenter(num_classes=3, class_names=["bg", "a", "b"], name="tiny_segmenter").save(path)
    return path


def test_cli_exports_saved_model_and_tflite(tiny_checkpoint, tmp_path, capsys):
    out = os.fspath(tmp_path / "exports")
    assert main(["export", "--checkpoint", tiny_checkpoint, "--out", out,
                 "--serving-layout"]) == 0
    version_dir = os.path.join(out, "tiny_segmenter", "1")
    assert version_dir in capsys.readouterr().out
    loaded = tf.saved_model.load(version_dir)
    assert loaded.class_names().numpy().tolist() == [b"bg", b"a", b"b"]

    tflite = os.fspath(tmp_path / "tiny.tflite")
    assert main(["export", "--checkpoint", tiny_checkpoint, "--out", tflite,
                 "--format", "tflite", "--quantize", "fp16"]) == 0
    interpreter = tf.lite.Interpreter(model_path=tflite)
    outputs = interpreter.get_signature_runner()(images=np.zeros((1, 9, 11, 3), np.uint8))
    assert outputs["labels"].shape == (1, 9, 11)


def test_untrained_model_from_get_model_exports(tmp_path):
    checkpoint = os.fspath(tmp_path / "model.keras")
    model = segzoo.get_model("unet", num_classes=2, base_filters=8)
    model.save(checkpoint)
    out = export_checkpoint(checkpoint, tmp_path / "unet_export")
    loaded = tf.saved_model.load(out)
    assert loaded.class_names().numpy().tolist() == [b"class_0", b"class_1"]
    image = np.random.default_rng(0).integers(0, 256, (1, 33, 47, 3), dtype=np.uint8)
    served = loaded.signatures["serving_default"](images=tf.constant(image))
    logits = keras.ops.convert_to_numpy(model(image.astype(np.float32)))
    np.testing.assert_array_equal(served["labels"].numpy(), logits.argmax(-1))


def run_cli_error(args, capsys):
    assert main(["export", *args]) == 2
    return capsys.readouterr().err


def test_cli_errors(tiny_checkpoint, tmp_path, capsys):
    out = os.fspath(tmp_path / "out")
    missing = os.fspath(tmp_path / "nope" / "model.keras")
    assert "does not exist" in run_cli_error(["--checkpoint", missing, "--out", out], capsys)

    not_keras = tmp_path / "weights.keras"
    not_keras.write_bytes(b"this is not a zip archive")
    assert "could not be loaded" in run_cli_error(["--checkpoint", os.fspath(not_keras),
                                                   "--out", out], capsys)

    plain = os.fspath(tmp_path / "plain.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    assert "not a segzoo model" in run_cli_error(["--checkpoint", plain, "--out", out], capsys)

    # The library names its arguments (quantize=...); the CLI shows the flags typed.
    assert "error: --quantize applies to --format tflite\n" in run_cli_error(
        ["--checkpoint", tiny_checkpoint, "--out", out, "--quantize", "fp16"], capsys)
    assert ("error: --quantize int8 needs --calibration-data NAME[:split] (and "
            "--calibration-data applies to --quantize int8 only)") in run_cli_error(
        ["--checkpoint", tiny_checkpoint, "--out", out, "--format", "tflite", "--quantize", "int8"],
        capsys)
    assert "error: --serving-layout applies to --format saved_model\n" in \
        run_cli_error(["--checkpoint", tiny_checkpoint, "--out", out, "--format", "onnx",
                       "--serving-layout"], capsys)
    assert ("error: --max-detections applies to --format saved_model and --format tflite"
            in run_cli_error(["--checkpoint", tiny_checkpoint, "--out", out, "--format", "onnx",
                              "--max-detections", "5"], capsys))
    assert ("error: --precision bfloat16 applies to --format saved_model; --format tflite is "
            "exported from float32 (see --quantize)") in run_cli_error(
        ["--checkpoint", tiny_checkpoint, "--out", out, "--format", "tflite",
         "--precision", "bfloat16"], capsys)
    assert "error: --calibration-data shapes:nosuch: 'shapes' has no split 'nosuch'" in \
        run_cli_error(["--checkpoint", tiny_checkpoint, "--out", out, "--format", "tflite",
                       "--quantize", "int8", "--calibration-data", "shapes:nosuch"], capsys)
    with pytest.raises(ValueError, match=r"^quantize applies to format='tflite'$"):
        export_checkpoint(tiny_checkpoint, out, quantize="fp16")
    assert "instance models only" in run_cli_error(
        ["--checkpoint", tiny_checkpoint, "--out", out, "--max-detections", "5"], capsys)
    assert not os.path.exists(out)
    with pytest.raises(SystemExit):  # argparse refuses an unknown --format
        main(["export", "--checkpoint", tiny_checkpoint, "--out", out, "--format", "caffe"])
    with pytest.raises(ValueError, match="unknown export format 'caffe'"):
        export_checkpoint(tiny_checkpoint, out, format="caffe")


def test_unsafe_checkpoint_is_refused_without_running_its_code(tmp_path, capsys):
    # A Lambda's bytecode would run on load; safe_mode=True refuses it instead.
    marker = tmp_path / "ran"

    inputs = keras.Input((2,))
    marker_path = os.fspath(marker)
    outputs = keras.layers.Lambda(lambda x: (open(marker_path, "w").close(), x * 2)[1])(inputs)
    unsafe = os.fspath(tmp_path / "unsafe.keras")
    keras.Model(inputs, outputs).save(unsafe)
    marker.unlink()  # building the model ran it once
    err = run_cli_error(["--checkpoint", unsafe, "--out", os.fspath(tmp_path / "o")], capsys)
    assert "could not be loaded" in err and "safe_mode" in err
    assert not marker.exists()
