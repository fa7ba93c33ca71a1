"""Calibration data for TFLite int8 post-training quantisation, and int8-vs-float32 agreement.

    from segzoo.export.quantize import representative_dataset, tflite_agreement
    dataset = representative_dataset("shapes:train", num_images=64)   # --calibration-data
    converter.representative_dataset = dataset   # yields [uint8 [1, H, W, 3]]
    tflite_agreement(model, "unet_int8.tflite", "shapes:val")
    # {"pixel_agreement": 0.995, "mean_iou_float32": 0.91, "mean_iou_tflite": 0.90, ...}

The representative set is any segzoo dataset's images, as `segzoo.data.load`
gives them (uint8 RGB at their own size), each fed alone (batch 1) to the
serving graph, whose input is uint8 pixels: the calibrator records the range
of every float tensor on real pictures of the kind the model will see.
"""

from __future__ import annotations

import numpy as np

from segzoo.errors import ArgumentError, arg

DEFAULT_CALIBRATION_IMAGES = 64


def parse_dataset_split(text, *, data_dir=None, default_split="train"):
    """`NAME[:split]` -> (name, split, DatasetInfo); the split defaults to `default_split`
    when the dataset has it, else its first split.

    Raises:
        ValueError: an unknown dataset or split (the message names both).
    """
    import segzoo.data

    if not text or not isinstance(text, str):
        raise ArgumentError(f"{arg('calibration_data')} expects NAME[:split] (e.g. shapes:train), "
                            f"got {text!r}")
    name, _, split = text.partition(":")
    load_kwargs = {"task": "semantic"} if name == "shapes" else {}
    info = segzoo.data.get_info(name, data_dir=data_dir, **load_kwargs)
    if not split:
        split = default_split if default_split in info.splits else info.splits[0]
    if split not in info.splits:
        raise ArgumentError(f"{arg('calibration_data', text)}: {name!r} has no split {split!r}; "
                            f"expected one of {', '.join(info.splits)}")
    return name, split, info


def _images(text, data_dir, num_images, default_split):
    import segzoo.data

    name, split, info = parse_dataset_split(text, data_dir=data_dir, default_split=default_split)
    load_kwargs = {"task": "semantic"} if name == "shapes" else {}
    ds = segzoo.data.load(name, split, data_dir=data_dir, **load_kwargs)
    if num_images is not None:
        ds = ds.take(int(num_images))
    return info, ds


def representative_dataset(text, *, data_dir=None, num_images=DEFAULT_CALIBRATION_IMAGES):
    """A TFLite `representative_dataset` callable over `NAME[:split]`'s images.

    Each call yields up to `num_images` lists `[uint8 [1, H, W, 3]]`, in the
    dataset's order. Raises ValueError at once for a bad NAME / split and,
    when iterated, if the split gives no image.
    """
    if num_images is not None and int(num_images) < 1:
        raise ArgumentError(f"{arg('calibration_images')} must be >= 1, got {num_images}")
    _, ds = _images(text, data_dir, num_images, "train")  # validates now

    def generate():
        count = 0
        for element in ds.as_numpy_iterator():
            count += 1
            yield [np.asarray(element["image"], np.uint8)[None]]
        if count == 0:
            raise ArgumentError(f"{arg('calibration_data', text)} has no images")

    return generate


def run_tflite(interpreter_or_path, image):
    """(labels int32 [1, H, W], probabilities float32 [1, H, W, K]) of a segzoo semantic
    .tflite for one uint8 image [1, H, W, 3] (the input resized to its shape)."""
    import tensorflow as tf

    interpreter = interpreter_or_path
    if not isinstance(interpreter, tf.lite.Interpreter):
        interpreter = tf.lite.Interpreter(model_path=str(interpreter_or_path))
    runner = interpreter.get_signature_runner("serving_default")
    outputs = runner(images=np.asarray(image, np.uint8))
    return outputs["labels"], outputs["probabilities"]


def tflite_agreement(model, tflite_path, text, *, data_dir=None, max_images=None) -> dict:
    """A semantic .tflite export against its float32 Keras model on `NAME[:split]`.

    Returns:
        {"pixel_agreement": fraction of pixels with equal labels,
         "mean_iou_float32", "mean_iou_tflite": each against the ground truth
         (255 ignored), "images", "data"}; split default "val".
    """
    import tensorflow as tf

    from segzoo.evaluation.agreement import label_agreement
    from segzoo.evaluation.semantic import ConfusionMatrix
    from segzoo.inference import predict_labels

    info, ds = _images(text, data_dir, max_images, "val")
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    matrices = [ConfusionMatrix(info.num_classes), ConfusionMatrix(info.num_classes)]
    agree, pixels, images = 0.0, 0, 0
    for element in ds.as_numpy_iterator():
        reference = predict_labels(model, element["image"])
        labels, _ = run_tflite(interpreter, element["image"][None])
        labels = labels[0]
        agree += label_agreement(reference, labels) * reference.size
        pixels += reference.size
        images += 1
        matrices[0].update(element["mask"], reference)
        matrices[1].update(element["mask"], labels)
    if images == 0:
        raise ValueError(f"{text!r} has no images")
    return {"pixel_agreement": agree / pixels, "images": images, "data": text,
            "mean_iou_float32": matrices[0].metrics()["mean_iou"],
            "mean_iou_tflite": matrices[1].metrics()["mean_iou"]}
