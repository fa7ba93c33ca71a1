"""TFLite export: semantic models (float32, float16 weights, full int8) and Mask R-CNN (float32, fp16).

    from segzoo.export import export_tflite
    export_tflite(model, "unet.tflite")                  # float32
    export_tflite(model, "unet_fp16.tflite", quantize="fp16")
    from segzoo.export.quantize import representative_dataset
    export_tflite(model, "unet_int8.tflite", quantize="int8",
                  representative_dataset=representative_dataset("shapes:train"))
    export_tflite(mask_rcnn, "mask_rcnn.tflite")         # instance models: builtin ops only

The flatbuffer holds one signature, "serving_default", the SavedModel's
(DESIGN.md "Exported SavedModel"), `images` uint8 [1, H, W, 3] in, H and W
dynamic (shape signature [-1, -1, -1, 3]):
- semantic: `labels` int32 [1, H, W], `probabilities` float32 [1, H, W, K].
- instance: `boxes` float32 [1, N, 4] ([x1, y1, x2, y2] input pixels),
  `scores` float32 [1, N], `classes` int32 [1, N] (the dataset's category
  ids, 0 on padding rows), `masks` uint8 {0, 1} [1, N, H, W] pasted into the
  image, `num_detections` int32 [1]; N = max detections, rows >=
  num_detections are padding. Models with the branches add `mask_scores`
  [1, N], `keypoints` [1, N, K, 3], `keypoint_scores` [1, N, K] (and
  keypoint_rcnn has no `masks`).

    interpreter = tf.lite.Interpreter(model_path="unet.tflite")
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1, H, W, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image[None]); interpreter.invoke()
    # or: interpreter.get_signature_runner()(images=image[None])

Instance models are traced under `segzoo.blocks.roi_sampling.roi_export_mode()`
(RoIAlign / RoIPool / the level mapper in float32 with tensors <= 5-D), so
every op is a TFLite builtin (no Flex delegate). There is no `serving_bytes`
in a flatbuffer: decode the image on the client.
"""

from __future__ import annotations

import os

import tensorflow as tf

from segzoo.blocks.roi_sampling import roi_export_mode
from segzoo.errors import ArgumentError, arg
from segzoo.export.files import replace_path, staging_directory
from segzoo.export.saved_model import check_max_detections, check_model
from segzoo.export.serving import ServingModule

QUANTIZATIONS = (None, "fp16", "int8")

INSTANCE_INT8_BLOCKER = (
    f"{arg('quantize', 'int8')} applies to semantic models; full-integer quantisation of an "
    "instance model (box decoding, NMS and paste-back in int8) is not offered: export it in "
    f"float32 (without {arg('quantize')}) or with {arg('quantize', 'fp16')}")


def convert_to_tflite(model, *, quantize=None, representative_dataset=None,
                      max_detections=None) -> bytes:
    """Converts a segzoo model's `serving_default` function; returns the flatbuffer bytes.

    `quantize="int8"` is full-integer post-training quantisation: int8 weights
    and activations for every op (TFLITE_BUILTINS_INT8, no float fallback),
    calibrated on `representative_dataset` (a callable yielding
    `[uint8 [1, H, W, 3]]`, e.g. `segzoo.export.quantize.representative_dataset`).
    The signature stays uint8 `images` in, int32 `labels` and float32
    `probabilities` (dequantised) out. Semantic models only.

    Instance models convert with builtin ops only, traced under
    `roi_export_mode()`; `max_detections` keeps the best N rows (as in the
    SavedModel export).
    """
    check_model(model)
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if (quantize == "int8") != (representative_dataset is not None):
        raise ArgumentError(f"{arg('quantize', 'int8')} needs {arg('representative_dataset')} (and "
                            f"{arg('representative_dataset')} applies to {arg('quantize', 'int8')} only)")
    if model.task != "semantic" and quantize == "int8":
        raise ArgumentError(INSTANCE_INT8_BLOCKER)
    check_max_detections(model, max_detections)
    module = ServingModule(model, max_detections=max_detections)
    # Traces (the export path of the RoI ops, for instance models), and tracks
    # every variable the graph captures.
    with roi_export_mode(model.task == "instance"):
        function = module.signatures(("serving_default",))["serving_default"]
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return converter.convert()
    except Exception as error:  # the converter's ConverterError has no public name
        needed = _select_ops(str(error))
        if not needed:
            raise
        raise ArgumentError(
            f"{type(model).__name__} does not convert to TFLite builtin ops: it needs {needed} "
            "from TF Select (the Flex delegate, which tf.lite.Interpreter of the TensorFlow "
            f"wheel does not link); export it as a SavedModel ({arg('format', 'saved_model')})"
        ) from error


def _select_ops(message: str) -> str:
    """The converter's "TF Select ops: A, B" list from its error message ("" if none)."""
    for line in message.splitlines():
        if line.startswith("TF Select ops:"):
            return line.split(":", 1)[1].strip()
    return ""


def export_tflite(model, path, quantize=None, representative_dataset=None,
                  max_detections=None) -> str:
    """Writes a `.tflite` file (replacing `path` atomically).

    Args:
        model: a segzoo model (semantic, or instance: Mask R-CNN and its
            keypoint / MaskIoU variants).
        path: the output file.
        quantize: None (float32 weights), "fp16" (float16 weights, float32
            compute) or "int8" (full-integer, needs `representative_dataset`;
            semantic models only).
        representative_dataset: the int8 calibration images (see
            `convert_to_tflite`).
        max_detections: instance models: keep at most this many detections
            (None keeps the model's N).
    Returns:
        `path`.
    """
    path = os.fspath(path)
    flatbuffer = convert_to_tflite(model, quantize=quantize,
                                   representative_dataset=representative_dataset,
                                   max_detections=max_detections)
    with staging_directory(path) as staging:
        staged = os.path.join(staging, "model.tflite")
        with open(staged, "wb") as f:
            f.write(flatbuffer)
        replace_path(staged, path)
    return path
