"""ImageNet input normalisation inside the models (pixels in, normalised pixels out; no weights).

Every segzoo model takes float RGB pixels in [0, 255]; its backbone's own
preprocessing is a layer here, so a checkpoint or export needs no outside
preprocessing. The constants are `segzoo.conventions`'.
"""

from __future__ import annotations

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
    """

    _MODES = ("caffe", "torch")

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in self._MODES:
            raise ValueError(f"`mode` must be one of {self._MODES}; received {mode!r}.")
        self.mode = mode

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, self.compute_dtype)
            return images[..., ::-1] - mean
        mean = keras.ops.convert_to_tensor(TORCHVISION_MEAN_RGB, self.compute_dtype)
        std = keras.ops.convert_to_tensor(TORCHVISION_STD_RGB, self.compute_dtype)
        return (images / 255.0 - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


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
