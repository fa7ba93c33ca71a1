"""Export segzoo models: SavedModel with serving signatures, TFLite, ONNX (semantic models).

    from segzoo.export import export_saved_model, export_tflite, export_checkpoint
    export_saved_model(model, "exports/unet")          # serving_default + serving_bytes
    export_tflite(model, "unet.tflite", quantize="fp16")
    export_checkpoint("runs/unet/model.keras", "exports/unet")   # what `segzoo export` runs
    export_checkpoint("runs/unet/model.keras", "unet.onnx", format="onnx")   # needs tf2onnx
"""

from __future__ import annotations

from segzoo.errors import ArgumentError, arg
from segzoo.export.saved_model import export_saved_model
from segzoo.export.serving import ServingModule
from segzoo.export.tflite import convert_to_tflite, export_tflite

FORMATS = ("saved_model", "tflite", "onnx")


def export_checkpoint(checkpoint, out, *, format="saved_model", max_detections=None,
                      serving_layout=False, version=1, quantize=None, precision=None,
                      calibration_data=None, data_dir=None, calibration_images=None) -> str:
    """Loads a segzoo `.keras` checkpoint (safe_mode=True) and exports it; returns the path.

    `precision` (None = "float32", "bfloat16", "float16"): the SavedModel's
    compute precision, the model rebuilt under that Keras mixed policy
    (float32 variables); the signatures still take uint8 images and return
    the float32 / int32 / uint8 outputs of DESIGN.md. TFLite takes float32
    (its own `quantize` option).

    `quantize="int8"` (TFLite): full-integer quantisation calibrated on the
    images of `calibration_data` "NAME[:split]" (any segzoo dataset, found in
    `data_dir`; `calibration_images` of them, default 64).

    Raises:
        FileNotFoundError: `checkpoint` does not exist.
        ValueError: not a segzoo checkpoint, unknown `format`, or an option
            that does not apply to the format / model.
    """
    from segzoo.training.precision import load_checkpoint_at, resolve_precision

    precision = resolve_precision(precision)
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {FORMATS}")
    if format != "saved_model" and serving_layout:
        raise ArgumentError(f"{arg('serving_layout')} applies to {arg('format', 'saved_model')}")
    if format == "onnx" and max_detections is not None:
        raise ArgumentError(f"{arg('max_detections')} applies to {arg('format', 'saved_model')} "
                            f"and {arg('format', 'tflite')}")
    if format != "tflite" and quantize is not None:
        raise ArgumentError(f"{arg('quantize')} applies to {arg('format', 'tflite')}")
    if format != "saved_model" and precision != "float32":
        raise ArgumentError(f"{arg('precision', precision)} applies to {arg('format', 'saved_model')}; "
                            f"{arg('format', format)} is exported from float32 (see {arg('quantize')})")
    if (quantize == "int8") != (calibration_data is not None):
        raise ArgumentError(f"{arg('quantize', 'int8')} needs {arg('calibration_data', 'NAME[:split]')} "
                            f"(and {arg('calibration_data')} applies to {arg('quantize', 'int8')} only)")
    representative = None
    if calibration_data is not None:
        from segzoo.export.quantize import DEFAULT_CALIBRATION_IMAGES, representative_dataset

        representative = representative_dataset(  # a bad NAME / split fails before loading
            calibration_data, data_dir=data_dir,
            num_images=DEFAULT_CALIBRATION_IMAGES if calibration_images is None else calibration_images)
    model = load_checkpoint_at(checkpoint, precision)
    if format == "tflite":
        return export_tflite(model, out, quantize=quantize, representative_dataset=representative,
                             max_detections=max_detections)
    if format == "onnx":
        from segzoo.export.onnx import export_onnx

        return export_onnx(model, out)
    return export_saved_model(model, out, max_detections=max_detections,
                              serving_layout=serving_layout, version=version)


__all__ = ["FORMATS", "ServingModule", "convert_to_tflite", "export_checkpoint",
           "export_saved_model", "export_tflite"]
