"""--precision float32|bfloat16|float16: the policy mapping, every model under mixed_bfloat16,
the CLI flag on train / eval / predict / export, and the bfloat16 SavedModel."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.cli import build_parser
from segzoo.evaluation.agreement import label_agreement, match_detections
from segzoo.training.precision import (
    load_checkpoint_at,
    model_precision,
    policy_name,
    precision_scope,
    resolve_precision,
)


def test_resolve_precision_and_policies():
    assert resolve_precision(None) == "float32"
    assert resolve_precision(None, mixed_precision=True) == "float16"  # the old flag's alias
    assert resolve_precision("float16", mixed_precision=True) == "float16"
    assert [policy_name(p) for p in ("float32", "bfloat16", "float16")] == [
        "float32", "mixed_bfloat16", "mixed_float16"]
    with pytest.raises(ValueError, match="precision='int8': expected one of float32, bfloat16, float16"):
        resolve_precision("int8")
    with pytest.raises(ValueError, match="mixed_precision=True means precision='float16' but precision='bfloat16'"):
        resolve_precision("bfloat16", mixed_precision=True)


def test_precision_scope_restores_the_global_policy_also_on_error():
    assert keras.config.dtype_policy().name == "float32"
    with precision_scope("bfloat16") as name:
        assert name == "mixed_bfloat16" == keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), precision_scope("float16"):
        raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("command", [
    ["train", "unet"], ["eval", "--checkpoint", "c.keras"],
    ["predict", "--checkpoint", "c.keras", "a.png", "--out", "o"],
    ["export", "--checkpoint", "c.keras", "--out", "o"]])
def test_every_command_takes_precision(command):
    parser = build_parser()
    assert parser.parse_args(command).precision is None  # float32 by default
    assert parser.parse_args([*command, "--precision", "bfloat16"]).precision == "bfloat16"
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--precision", "half"])


def _fill_zero_kernels(model, seed=0):
    """He-normal values for the all-zero kernels (FCN's score layers), so labels are not trivial."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_weights:
        shape = tuple(v.shape)
        if len(shape) >= 2 and not np.any(keras.ops.convert_to_numpy(v)):
            v.assign(rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape).astype("float32"))


def _pair(name, **kwargs):
    """(float32 model, the same weights built under the global mixed_bfloat16 policy)."""
    reference = segzoo.get_model(name, **kwargs)
    _fill_zero_kernels(reference)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        other = segzoo.get_model(name, **kwargs)
    finally:
        keras.config.set_dtype_policy("float32")
    other.set_weights(reference.get_weights())
    return reference, other


@pytest.mark.parametrize("name, kwargs", [
    ("unet", {"base_filters": 8}), ("unet", {"base_filters": 8, "padding": "valid"}),
    pytest.param("fcn8s", {}, marks=pytest.mark.slow)])  # VGG-16 weights: ~25 s
def test_semantic_models_under_the_global_bfloat16_policy(name, kwargs):
    reference, other = _pair(name, num_classes=3, **kwargs)
    assert model_precision(other) == "bfloat16" and model_precision(reference) == "float32"
    convs = [layer for layer in other._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(v.dtype == "float32" for layer in convs for v in layer.weights)
    assert sum(layer.compute_dtype == "bfloat16" for layer in convs) >= len(convs) - 1
    size = 252 if kwargs.get("padding") == "valid" else 32  # valid: 68 px out
    images = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(reference(images, training=False))
    logits = other(images, training=False)
    assert logits.dtype == "float32"  # the logits layer stays float32
    logits = keras.ops.convert_to_numpy(logits)
    assert np.abs(logits - expected).max() <= 0.15 * expected.std()  # bfloat16: 8-bit mantissa
    assert label_agreement(expected.argmax(-1), logits.argmax(-1)) >= 0.98


@pytest.mark.slow  # two Mask R-CNN traces: ~1 min on 2 idle cores, far more on a shared one
def test_mask_rcnn_under_the_global_bfloat16_policy_infers_and_trains():
    from tests.models.mask_rcnn.test_model import TINY, batch

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = segzoo.get_model("mask_rcnn", **TINY)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model_precision(model) == "bfloat16"
    # Every layer computes in bfloat16 but the predictions (Keras' advice for last layers):
    # RPN objectness / deltas, class scores / box deltas, mask logits.
    predictions = {"cls_logits", "bbox_pred", "cls_score", "mask_fcn_logits"}
    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)]
    assert len(layers) > 20
    for layer in layers:
        assert layer.compute_dtype == ("float32" if layer.name in predictions else "bfloat16"), layer.name
    assert {layer.name for layer in layers if layer.compute_dtype == "float32"} == predictions
    images, targets = batch()
    out = model(tf.constant(images), training=False)
    assert out["boxes"].dtype == tf.float32 and out["scores"].dtype == tf.float32
    assert out["masks"].dtype == tf.uint8 and out["classes"].dtype == tf.int32
    assert np.all(np.isfinite(out["boxes"].numpy())) and np.all(np.isfinite(out["scores"].numpy()))
    losses = tf.function(lambda x, t: model.compute_losses(x, t, training=True))(images, targets)
    assert all(v.dtype == tf.float32 and np.isfinite(float(v)) for v in losses.values())


def test_match_detections_counts_missing_and_extra():
    reference = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 40, 40.0]]), "classes": [1, 2],
                 "scores": [0.9, 0.8]}
    shifted = {"boxes": np.array([[0, 0, 10, 10.4], [20, 20, 40, 40.0], [50, 50, 60, 60]]),
               "classes": [1, 1, 2], "scores": [0.9, 0.8, 0.7]}
    result = match_detections(reference, shifted, iou_threshold=0.9)
    # Box 0 matches (IoU 0.96); box 1 has the wrong class; one extra detection.
    assert result == {"matched": 1, "reference": 2, "other": 3, "fraction": 1 / 3}
    assert match_detections({"boxes": np.zeros((0, 4)), "classes": [], "scores": []},
                            {"boxes": np.zeros((0, 4)), "classes": [], "scores": []})["fraction"] == 1.0


def _conv_dtypes(graph_def) -> set[str]:
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op == "Conv2D"}


def test_bfloat16_checkpoint_loading_and_export(tmp_path):
    from segzoo.commands.export import run as export_run
    from tests.export.helpers import keras_probabilities
    from tests.export.tiny_models import TinySegmenter

    model = TinySegmenter(num_classes=3, width=8)
    model.save(tmp_path / "model.keras")
    loaded = load_checkpoint_at(tmp_path / "model.keras", "bfloat16")
    assert model_precision(loaded) == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    args = build_parser().parse_args(["export", "--checkpoint", str(tmp_path / "model.keras"),
                                      "--out", str(tmp_path / "bf16"), "--precision", "bfloat16"])
    assert export_run(args) == 0
    serving = tf.saved_model.load(str(tmp_path / "bf16")).signatures["serving_default"]
    image = np.random.default_rng(2).integers(0, 256, (1, 24, 40, 3), dtype=np.uint8)
    outputs = serving(images=tf.constant(image))
    assert outputs["labels"].dtype == tf.int32 and outputs["labels"].shape == (1, 24, 40)
    assert outputs["probabilities"].dtype == tf.float32
    expected = keras_probabilities(model, image)
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=0.03)
    assert label_agreement(outputs["labels"].numpy(), expected.argmax(-1)) >= 0.98
    assert "bfloat16" in _conv_dtypes(serving.graph.as_graph_def())  # the convs run in bfloat16
    metadata = json.loads((tmp_path / "bf16" / "assets" / "segzoo.json").read_text())
    assert metadata["task"] == "semantic"
    with pytest.raises(ValueError, match="precision='bfloat16' applies to format='saved_model'"):
        from segzoo.export import export_checkpoint

        export_checkpoint(tmp_path / "model.keras", tmp_path / "x.tflite", format="tflite",
                          precision="bfloat16")


def test_train_with_precision_bfloat16(tmp_path):
    import dataclasses

    from segzoo.training.fit import train
    from tests.training import tiny_model

    recipe = dataclasses.replace(tiny_model.tiny_recipe(), epochs=1)
    result = train({"model": "tiny_segmenter", "recipe": recipe, "out": str(tmp_path / "run"),
                    "verbose": 0, "precision": "bfloat16"})
    assert result.info["precision"] == "bfloat16" and not result.info["mixed_precision"]
    assert result.model.get_layer("conv1").compute_dtype == "bfloat16"
    assert not isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(result.best_value)
    assert keras.config.dtype_policy().name == "float32"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["precision"] == "bfloat16"


def test_a_float32_detector_checkpoint_loads_at_bfloat16_as_if_built_there(tmp_path):
    """The saved configs pinned the FPN, RPN and RoI heads at float32: loaded at bfloat16 only
    the backbone followed. Now every layer computes as in a model built under the policy."""
    from tests.models.mask_rcnn.test_model import TINY

    def dtypes(model):
        return sorted((type(layer).__name__, layer.dtype_policy.name)
                      for layer in model._flatten_layers())

    segzoo.get_model("ms_rcnn", **TINY).save(tmp_path / "model.keras")
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        built = segzoo.get_model("ms_rcnn", **TINY)
    finally:
        keras.config.set_dtype_policy("float32")
    loaded = load_checkpoint_at(tmp_path / "model.keras", "bfloat16")
    assert dtypes(loaded) == dtypes(built)
    assert loaded.roi_heads.box_head.fc6.compute_dtype == "bfloat16"
    assert loaded.fpn.compute_dtype == "bfloat16"
    assert loaded.roi_heads.box_predictor.cls_score.compute_dtype == "float32"
    back = load_checkpoint_at(tmp_path / "model.keras", "float32")
    assert {policy for *_, policy in dtypes(back)} == {"float32"}
