"""TFLite export of semantic models (FCN, U-Net): float32, float16 weights, or full int8.

    from segzoo.export import export_tflite
    export_tflite(model, "unet.tflite")                  # float32
    export_tflite(model, "unet_fp16.tflite", quantize="fp16")
    from segzoo.export.quantize import representative_dataset
    export_tflite(model, "unet_int8.tflite", quantize="int8",
                  representative_dataset=representative_dataset("shapes:train"))

The flatbuffer holds one signature, "serving_default", the SavedModel's:
`images` uint8 [1, H, W, 3] -> `labels` int32 [1, H, W], `probabilities`
float32 [1, H, W, K]. H and W are dynamic (shape signature [-1, -1, -1, 3]):

    interpreter = tf.lite.Interpreter(model_path="unet.tflite")
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1, H, W, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image[None]); interpreter.invoke()
    # or: interpreter.get_signature_runner()(images=image[None])

Instance models (Mask R-CNN) are not exported to TFLite; see README
"Export and serving" for what blocks it.
"""

from __future__ import annotations

import os

import tensorflow as tf

from segzoo.errors import ArgumentError, arg
from segzoo.export.files import replace_path, staging_directory
from segzoo.export.saved_model import check_model
from segzoo.export.serving import ServingModule

QUANTIZATIONS = (None, "fp16", "int8")

MASK_RCNN_TFLITE_BLOCKER = (
    "TFLite export is for semantic models only. Mask R-CNN converts only with SELECT_TF_OPS, "
    "whose Flex delegate tf.lite.Interpreter of the TensorFlow wheel does not link. RoIAlign and "
    "the FPN level mapper have a builtin-only path (segzoo.blocks.roi_sampling.roi_export_mode: "
    "float32, <= 5-D); what still needs Flex are StridedSlice ops with new_axis_mask "
    "(`x[..., None]` on dynamic-shape tensors) in the detector's box ops (batched-NMS group "
    "offsets), post-processing (valid-box masking, paste-back weights) and the final mask "
    f"threshold; export Mask R-CNN as a SavedModel ({arg('format', 'saved_model')})."
)


def convert_to_tflite(model, *, quantize=None, representative_dataset=None) -> bytes:
    """Converts a semantic segzoo model's serving function; returns the flatbuffer bytes.

    `quantize="int8"` is full-integer post-training quantisation: int8 weights
    and activations for every op (TFLITE_BUILTINS_INT8, no float fallback),
    calibrated on `representative_dataset` (a callable yielding
    `[uint8 [1, H, W, 3]]`, e.g. `segzoo.export.quantize.representative_dataset`).
    The signature stays uint8 `images` in, int32 `labels` and float32
    `probabilities` (dequantised) out.
    """
    check_model(model)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if (quantize == "int8") != (representative_dataset is not None):
        raise ArgumentError(f"{arg('quantize', 'int8')} needs {arg('representative_dataset')} (and "
                            f"{arg('representative_dataset')} applies to {arg('quantize', 'int8')} only)")
    if model.task != "semantic":
        raise ArgumentError(MASK_RCNN_TFLITE_BLOCKER)
    module = ServingModule(model)
    module.signatures()  # traces, and tracks every variable the graph captures
    function = module.serving_default.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def export_tflite(model, path, quantize=None, representative_dataset=None) -> str:
    """Writes a `.tflite` file for a semantic model (replacing `path` atomically).

    Args:
        model: a semantic segzoo model.
        path: the output file.
        quantize: None (float32 weights), "fp16" (float16 weights, float32
            compute) or "int8" (full-integer, needs `representative_dataset`).
        representative_dataset: the int8 calibration images (see
            `convert_to_tflite`).
    Returns:
        `path`.
    """
    path = os.fspath(path)
    flatbuffer = convert_to_tflite(model, quantize=quantize,
                                   representative_dataset=representative_dataset)
    with staging_directory(path) as staging:
        staged = os.path.join(staging, "model.tflite")
        with open(staged, "wb") as f:
            f.write(flatbuffer)
        replace_path(staged, path)
    return path
