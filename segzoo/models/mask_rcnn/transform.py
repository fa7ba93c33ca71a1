"""The detector's input / output transform (torchvision's `GeneralizedRCNNTransform`).

Inference: images float32 `[B, H, W, 3]` RGB in [0, 255] are resized
(bilinear, half-pixel centres) so the short side is `min_size` and the long
side at most `max_size` (scale = min(min_size / short, max_size / long); new
sides `round(side * scale)`, at least 1; `size_rounding="floor"`: torchvision's
`floor(side * scale)` with the scale in float64), optionally normalised, and padded
bottom / right with zeros to a multiple of `size_divisible` (32). Outputs
(boxes, keypoints) are mapped back to input pixels with the per-axis ratios
(new_w / W, new_h / H), as torchvision's `resize_boxes` / `resize_keypoints`.

Training batches come already resized by the input pipeline
(`segzoo.data.pipeline.instance_train_pipeline`), so training only
normalises and pads (`pad`).

Normalisation: by default none here (`image_mean=None`): the backbone
normalises its own input (`ResNetBackbone(preprocessing=...)`). With
`image_mean` / `image_std` (in [0, 1] units, torchvision's convention, e.g.
ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)) the transform
computes `(x / 255 - mean) / std` before padding, so the padding is zero in
normalised space exactly as in torchvision (build the backbone with
`preprocessing=None` then).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segzoo")
class DetectionTransform(keras.layers.Layer):
    """Resize / normalise / pad images in, map detections back out (no weights).

    Args:
        min_size: inference short side (pixels).
        max_size: inference cap on the long side (pixels).
        size_divisible: padded sides are multiples of this (32: FPN's P5 stride).
        image_mean, image_std: per-channel RGB normalisation in [0, 1] units,
            or None (both) for none.
    """

    def __init__(self, min_size=800, max_size=1333, size_divisible=32, image_mean=None, image_std=None,
                 size_rounding="round", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.min_size = int(min_size)
        self.max_size = int(max_size)
        self.size_divisible = int(size_divisible)
        if self.min_size < 32 or self.max_size < self.min_size:
            raise ValueError(f"need 32 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        if size_rounding not in ("round", "floor"):
            raise ValueError(f"size_rounding must be 'round' or 'floor', got {size_rounding!r}")
        self.size_rounding = size_rounding
        if self.size_divisible < 1:
            raise ValueError(f"size_divisible must be >= 1, got {size_divisible}")
        if (image_mean is None) != (image_std is None):
            raise ValueError("image_mean and image_std go together: give both (3 values each) or neither")
        self.image_mean = None if image_mean is None else [float(v) for v in image_mean]
        self.image_std = None if image_std is None else [float(v) for v in image_std]
        if self.image_mean is not None and (len(self.image_mean) != 3 or len(self.image_std) != 3
                                            or min(self.image_std) <= 0):
            raise ValueError(f"image_mean / image_std need 3 values each (std > 0), got {image_mean}, {image_std}")

    def normalize(self, images):
        """float32 `[B, H, W, 3]` in [0, 255] -> the backbone's input (unchanged without image_mean)."""
        images = tf.cast(images, tf.float32)
        if self.image_mean is None:
            return images
        return (images / 255.0 - tf.constant(self.image_mean)) / tf.constant(self.image_std)

    def pad(self, images):
        """Normalise, then zero-pad bottom / right to multiples of `size_divisible`."""
        images = self.normalize(images)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        step = self.size_divisible
        pad_h = (step - height % step) % step
        pad_w = (step - width % step) % step
        return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def resized_size(self, height, width):
        """(new_h, new_w) int32 scalars for an input of `height` x `width`."""
        # "floor": torchvision's interpolate(scale_factor=..., recompute_scale_factor=True), in float64.
        dtype, rounding = (tf.float64, tf.floor) if self.size_rounding == "floor" else (tf.float32, tf.round)
        h_f, w_f = tf.cast(height, dtype), tf.cast(width, dtype)
        scale = tf.minimum(self.min_size / tf.minimum(h_f, w_f), self.max_size / tf.maximum(h_f, w_f))
        new_h = tf.maximum(tf.cast(rounding(h_f * scale), tf.int32), 1)
        new_w = tf.maximum(tf.cast(rounding(w_f * scale), tf.int32), 1)
        return new_h, new_w

    def call(self, images):
        """Inference input: `(padded [B, H', W', 3], (new_h, new_w))`; boxes are clipped to new_h x new_w."""
        images = tf.cast(images, tf.float32)
        new_h, new_w = self.resized_size(tf.shape(images)[1], tf.shape(images)[2])
        resized = tf.image.resize(images, tf.stack([new_h, new_w]), method="bilinear")
        return self.pad(resized), (new_h, new_w)

    @staticmethod
    def _ratios(resized_size, original_size):
        ratio_x = tf.cast(resized_size[1], tf.float32) / tf.cast(original_size[1], tf.float32)
        ratio_y = tf.cast(resized_size[0], tf.float32) / tf.cast(original_size[0], tf.float32)
        return ratio_x, ratio_y

    def postprocess_boxes(self, boxes, resized_size, original_size):
        """float32 `[..., 4]` xyxy in resized pixels -> input pixels."""
        ratio_x, ratio_y = self._ratios(resized_size, original_size)
        return boxes / tf.stack([ratio_x, ratio_y, ratio_x, ratio_y])

    def postprocess_keypoints(self, keypoints, resized_size, original_size):
        """float32 `[..., K, 3]` (x, y, score) in resized pixels -> input pixels (score unchanged)."""
        ratio_x, ratio_y = self._ratios(resized_size, original_size)
        return keypoints / tf.stack([ratio_x, ratio_y, 1.0])

    def get_config(self):
        config = super().get_config()
        config.update(min_size=self.min_size, max_size=self.max_size, size_divisible=self.size_divisible,
                      image_mean=self.image_mean, image_std=self.image_std, size_rounding=self.size_rounding)
        return config
