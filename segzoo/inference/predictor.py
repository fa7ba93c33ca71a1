"""One image (or a batch) through a segzoo model: what `segzoo predict` and `segzoo eval` run.

    from segzoo.inference import predict_labels, predict_instances
    labels = predict_labels(model, image)              # int32 [H, W] class ids
    detections = predict_instances(model, image)       # numpy dict, num_detections rows

Every call goes through `model.serving_call` (the model contract of
`segzoo.models.base`: grey conversion for one-channel models, U-Net's
overlap-tile mirroring for "valid" padding), inside one `tf.function` stored on
the model (`segzoo.models.base.traced`), traced once for any image size.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from segzoo.models.base import traced

_IMAGES = tf.TensorSpec([None, None, None, 3], tf.float32)


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    return image


def _check_task(model, task: str, function: str) -> None:
    if model.task != task:
        raise ValueError(f"{function} takes a {task} model; this one is a {model.task} model")


def _semantic(model, images):
    """(labels int32 [B, H, W] = argmax of the logits, softmax float32 [B, H, W, K])."""
    _check_task(model, "semantic", "semantic prediction")

    def labels_and_probabilities(pixels):
        logits = tf.cast(model.serving_call(pixels), tf.float32)
        return tf.argmax(logits, -1, output_type=tf.int32), tf.nn.softmax(logits, axis=-1)

    fn = traced(model, "predict_semantic", labels_and_probabilities, input_signature=[_IMAGES])
    return fn(tf.cast(images, tf.float32))


def predict_probabilities(model, images) -> tf.Tensor:
    """Softmax float32 [B, H, W, K] of a semantic model for RGB pixels [B, H, W, 3] in [0, 255].

    The output covers the input pixel for pixel (any H, W).
    """
    return _semantic(model, images)[1]


def predict_labels(model, image, *, return_probabilities: bool = False):
    """Class ids int32 [H, W] (and softmax float32 [H, W, K]) for one image uint8/float [H, W, 3]."""
    image = _check_image(image)
    labels, probabilities = _semantic(model, image[None].astype(np.float32))
    if return_probabilities:
        return labels[0].numpy(), probabilities[0].numpy()
    return labels[0].numpy()


def predict_instances(model, image) -> dict:
    """Detections of one image uint8/float [H, W, 3], truncated to num_detections (numpy).

    Returns {"boxes" float32 [N, 4] xyxy input pixels, "scores" [N] (descending),
    "classes" int32 [N] (the model's ids 1..K; `model.category_ids[c - 1]` is the
    dataset's id), "masks" uint8 [N, H, W]}, plus any other per-detection output
    of the model (e.g. keypoints) truncated the same way.
    """
    _check_task(model, "instance", "predict_instances")
    image = _check_image(image)
    fn = traced(model, "predict_instances", model.serving_call, input_signature=[_IMAGES])
    out = fn(tf.convert_to_tensor(image[None].astype(np.float32)))
    n = int(out["num_detections"][0])
    return {key: value[0].numpy()[:n] for key, value in out.items() if key != "num_detections"}


__all__ = ["predict_instances", "predict_labels", "predict_probabilities"]
