"""ONNX export of semantic models (FCN, U-Net) through tf2onnx, run with onnxruntime.

    from segzoo.export.onnx import export_onnx
    export_onnx(model, "unet.onnx")

    import onnxruntime
    session = onnxruntime.InferenceSession("unet.onnx", providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["labels", "probabilities"], {"images": image})

The graph is the SavedModel's `serving_default` (segzoo.export.serving): input
`images` uint8 [B, H, W, 3] with B, H, W dynamic; outputs `labels` int32
[B, H, W] and `probabilities` float32 [B, H, W, K]. The model's metadata
(`metadata_props`) holds `segzoo_task`, `segzoo_class_names` (a JSON list) and
`segzoo_version`.

Instance models (Mask R-CNN) are not exported to ONNX; `MASK_RCNN_ONNX_BLOCKER`
says what stops the converter.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from segzoo.errors import ArgumentError, arg
from segzoo.export.files import replace_path, staging_directory
from segzoo.export.saved_model import check_model
from segzoo.export.serving import IMAGES_SPEC, ServingModule

# Opset 17 (onnxruntime >= 1.12 runs it).
ONNX_OPSET = 17

MASK_RCNN_ONNX_BLOCKER = (
    "ONNX export is for semantic models only. tf2onnx 1.17 (TF 2.21) cannot express Mask "
    "R-CNN's inference graph: its batched NMS, tf.image.non_max_suppression_padded, is a "
    "while loop over StatelessIf branches, and tf2onnx fails on it (\"Failed to convert node "
    "'.../non_max_suppression_padded/PartitionedCall/while'\", then \"make_sure failure: "
    "Cannot find node with output '.../non_max_suppression_padded/PartitionedCall/cond_2:2' "
    "in graph 'cond_3_true_...'\"). Export Mask R-CNN as a SavedModel "
    f"({arg('format', 'saved_model')})."
)


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError as error:  # an optional dependency: say which package to install
        raise ValueError("ONNX export needs the tf2onnx package (pip install tf2onnx==1.17.0, "
                         f"see requirements.txt): {error}") from error
    tf2onnx.logging.set_level(logging.ERROR)
    return tf2onnx


def convert_to_onnx(model, *, opset=ONNX_OPSET):
    """Converts a semantic segzoo model's serving function; returns the `onnx.ModelProto`."""
    check_model(model)
    if model.task != "semantic":
        raise ArgumentError(MASK_RCNN_ONNX_BLOCKER)
    tf2onnx = _tf2onnx()
    module = ServingModule(model)
    function = tf.function(module._predict, input_signature=[IMAGES_SPEC])
    proto, _ = tf2onnx.convert.from_function(function, input_signature=[IMAGES_SPEC],
                                             opset=int(opset))
    from segzoo import __version__

    for key, value in (("segzoo_task", model.task),
                       ("segzoo_class_names", json.dumps(module.class_name_list)),
                       ("segzoo_version", __version__)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def export_onnx(model, path, *, opset=ONNX_OPSET) -> str:
    """Writes a `.onnx` file for a semantic model (replacing `path` atomically); returns `path`."""
    path = os.fspath(path)
    proto = convert_to_onnx(model, opset=opset)
    with staging_directory(path) as staging:
        staged = os.path.join(staging, "model.onnx")
        with open(staged, "wb") as f:
            f.write(proto.SerializeToString())
        replace_path(staged, path)
    return path
