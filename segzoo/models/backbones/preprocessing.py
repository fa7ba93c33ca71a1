"""ImageNet input normalisation inside the models (pixels in, normalised pixels out; no weights).

Every segzoo model takes float RGB pixels in [0, 255]; its backbone's own
preprocessing is a layer here, so a checkpoint or export needs no outside
preprocessing. The constants are `segzoo.conventions`'.
"""

from __future__ import annotations

import math

import keras

from segzoo.conventions import IMAGENET_MEAN_RGB, TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB

# The "caffe" mean in the BGR order it is subtracted in.
CAFFE_BGR_MEAN = tuple(reversed(IMAGENET_MEAN_RGB))


@keras.saving.register_keras_serializable(package="segzoo")
class ImageNormalization(keras.layers.Layer):
    """ImageNet input normalisation of float RGB pixels in [0, 255]. No weights.

    mode "caffe" (``keras.applications.resnet.preprocess_input``, Caffe's VGG /
    ResNet): RGB -> BGR, minus the BGR mean [103.939, 116.779, 123.68]; mode
    "torch": ``x / 255``, minus [0.485, 0.456, 0.406], divided by
    [0.229, 0.224, 0.225] (RGB). Input and output [B, H, W, 3].

    Args:
        mode: "caffe" or "torch".
        mean: None (the mode's ImageNet mean) or 3 numbers in the mode's own
            order and units: "caffe" BGR grey levels in [0, 255] (the FCN
            authors' nets: (104.00698793, 116.66876762, 122.67891434)),
            "torch" RGB in [0, 1].
        std: None (the mode's) or 3 RGB numbers; "torch" only (Caffe's nets
            do not scale).
    """

    _MODES = ("caffe", "torch")

    def __init__(self, mode="caffe", mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in self._MODES:
            raise ValueError(f"`mode` must be one of {self._MODES}; received {mode!r}.")
        self.mode = mode
        default_mean = CAFFE_BGR_MEAN if mode == "caffe" else TORCHVISION_MEAN_RGB
        self.mean = default_mean if mean is None else _three("mean", mean)
        if std is not None and mode == "caffe":
            raise ValueError(f"`std` applies to mode 'torch' only; received std={std!r} with mode 'caffe'.")
        self.std = TORCHVISION_STD_RGB if std is None else _three("std", std, positive=True)

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        mean = keras.ops.convert_to_tensor(self.mean, self.compute_dtype)
        if self.mode == "caffe":
            return images[..., ::-1] - mean
        std = keras.ops.convert_to_tensor(self.std, self.compute_dtype)
        return (images / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {**super().get_config(), "mode": self.mode, "mean": list(self.mean)}
        if self.mode == "torch":
            config["std"] = list(self.std)
        return config


def _three(name, values, positive=False):
    """`values` as a tuple of 3 python floats (finite; > 0 when `positive`), or ValueError."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) and (v > 0 or not positive) for v in out):
        what = "3 positive numbers" if positive else "3 finite numbers"
        raise ValueError(f"`{name}` must be {what} (one per channel); received {values!r}.")
    return out


@keras.saving.register_keras_serializable(package="segzoo")
class CaffeVGGPreprocess(ImageNormalization):
    """`ImageNormalization("caffe")` under the name older FCN checkpoints saved (kept so they load)."""

    def __init__(self, **kwargs):
        kwargs.pop("mode", None)
        super().__init__("caffe", **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("mode")
        return config
