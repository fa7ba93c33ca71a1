"""Mask head: 4 x (conv3x3 256 + ReLU), deconv 2x2 stride 2 + ReLU, 1x1 conv per class.

`MaskHead` (torchvision's MaskRCNNHeads plus the predictor's `conv5_mask`
deconvolution) maps pooled RoI features `[R, 14, 14, C]` to
`[R, 28, 28, 256]`; `MaskPredictor` (the `mask_fcn_logits` 1x1 conv) gives
mask logits `[R, 28, 28, K + 1]` (one channel per class, channel 0 =
background), or `[R, 28, 28, 1]` when class-agnostic. The deconvolution sits
in `MaskHead` so that everything class-independent is in one layer and the
class-dependent `mask_fcn_logits` alone is skipped when fine-tuning to
another class count. Init: He normal with fan-out (torchvision's
kaiming_normal_(mode="fan_out", nonlinearity="relu")), bias 0.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.models.initializers import he_fan_out


@keras.saving.register_keras_serializable(package="segzoo")
class MaskHead(keras.layers.Layer):
    """`[R, S, S, C]` -> `[R, 2S, 2S, deconv_channels]`: 3x3 convs + ReLU, then deconv 2x2/2 + ReLU.

    Args:
        layers: widths of the 3x3 convs (`mask_fcn1`..).
        deconv_channels: channels of the 2x2 stride-2 deconvolution (`conv5_mask`).
    """

    def __init__(self, layers=(256, 256, 256, 256), deconv_channels=256, **kwargs):
        super().__init__(**kwargs)
        self.layers_widths = tuple(int(w) for w in layers)
        self.deconv_channels = int(deconv_channels)
        self.convs = [
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=he_fan_out(),
                                dtype=self.dtype_policy, name=f"mask_fcn{i + 1}")
            for i, width in enumerate(self.layers_widths)
        ]
        self.conv5_mask = keras.layers.Conv2DTranspose(
            self.deconv_channels, 2, strides=2, activation="relu", kernel_initializer=he_fan_out(),
            dtype=self.dtype_policy, name="conv5_mask")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:-1] + (conv.filters,)
        self.conv5_mask.build(shape)
        self.built = True

    def call(self, features):
        for conv in self.convs:
            features = conv(features)
        return self.conv5_mask(features)

    def get_config(self):
        config = super().get_config()
        config.update({"layers": list(self.layers_widths), "deconv_channels": self.deconv_channels})
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class MaskPredictor(keras.layers.Layer):
    """`[R, S, S, C]` -> float32 mask logits `[R, S, S, K + 1]` (or `[..., 1]` class-agnostic).

    Args:
        num_classes: K foreground classes.
        class_agnostic: one mask channel shared by all classes.
    """

    def __init__(self, num_classes, class_agnostic=False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.class_agnostic = bool(class_agnostic)
        self.mask_fcn_logits = keras.layers.Conv2D(
            1 if self.class_agnostic else self.num_classes + 1, 1, kernel_initializer=he_fan_out(),
            dtype="float32", name="mask_fcn_logits")  # float32 under a mixed policy

    def build(self, input_shape):
        self.mask_fcn_logits.build(tuple(input_shape))
        self.built = True

    def call(self, features):
        return tf.cast(self.mask_fcn_logits(features), tf.float32)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "class_agnostic": self.class_agnostic})
        return config
