"""Keypoint head (Mask R-CNN for human pose): 8 x conv3x3 512, deconv 4x4/2, bilinear 2x -> 56 x 56.

`KeypointHead` is torchvision's `KeypointRCNNHeads`: eight 3x3 convolutions
(512 channels, ReLU) on the 14 x 14 RoIAligned features (sampling ratio 2).
`KeypointPredictor` is torchvision's `KeypointRCNNPredictor`: a 4x4 stride-2
transposed convolution (torch padding 1) to one channel per keypoint at
28 x 28 (`kps_score_lowres`), then a 2x bilinear upsampling
(`F.interpolate(align_corners=False)`, the same numbers as TF's half-pixel
bilinear resize) to the 56 x 56 heatmap logits that `keypoint_ops` encodes,
scores and decodes. Init: He normal with fan-out, bias 0 (torchvision's
kaiming_normal_(mode="fan_out", nonlinearity="relu")) for every conv and the
deconvolution.

Weight layout for an importer: Keras `Conv2D` kernels are (kh, kw, in, out)
= torch `weight.permute(2, 3, 1, 0)`; `Conv2DTranspose` kernels are
(kh, kw, out, in) = torch ConvTranspose2d `weight.permute(2, 3, 1, 0)` (torch
stores [in, out, kh, kw]); no kernel flip either way.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from segzoo.models.initializers import he_fan_out


@keras.saving.register_keras_serializable(package="segzoo")
class KeypointHead(keras.layers.Layer):
    """`[R, S, S, C]` pooled RoI features -> `[R, S, S, layers[-1]]`: 3x3 convs + ReLU.

    Args:
        layers: widths of the 3x3 convolutions `conv_fcn1`.. (8 x 512 in
            torchvision / Detectron; smaller for tests).
    """

    def __init__(self, layers=(512,) * 8, **kwargs):
        super().__init__(**kwargs)
        self.layers_widths = tuple(int(w) for w in layers)
        if not self.layers_widths or min(self.layers_widths) < 1:
            raise ValueError(f"layers must be a non-empty list of positive widths, got {layers!r}")
        self.convs = [
            keras.layers.Conv2D(width, 3, padding="same", activation="relu", kernel_initializer=he_fan_out(),
                                dtype=self.dtype_policy, name=f"conv_fcn{i + 1}")
            for i, width in enumerate(self.layers_widths)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            conv.build(shape)
            shape = shape[:-1] + (conv.filters,)
        self.built = True

    def call(self, features):
        for conv in self.convs:
            features = conv(features)
        return features

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.layers_widths[-1],)

    def get_config(self):
        config = super().get_config()
        config["layers"] = list(self.layers_widths)
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class KeypointPredictor(keras.layers.Layer):
    """`[R, S, S, C]` -> float32 heatmap logits `[R, 2 * up_scale * S, ..., num_keypoints]`.

    With S = 14 and up_scale = 2: `[R, 56, 56, num_keypoints]`.

    Args:
        num_keypoints: P, one heatmap channel per keypoint (17 for COCO persons).
        up_scale: factor of the bilinear upsampling after the deconvolution.
    """

    def __init__(self, num_keypoints=17, up_scale=2, **kwargs):
        super().__init__(**kwargs)
        self.num_keypoints = int(num_keypoints)
        self.up_scale = int(up_scale)
        if self.num_keypoints < 1:
            raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
        if self.up_scale < 1:
            raise ValueError(f"up_scale must be >= 1, got {up_scale}")
        # Kernel 4, stride 2, TF "same" pads 1 on each side: torch's padding=4 // 2 - 1 = 1.
        self.kps_score_lowres = keras.layers.Conv2DTranspose(
            self.num_keypoints, 4, strides=2, padding="same", kernel_initializer=he_fan_out(),
            dtype="float32", name="kps_score_lowres")
        # It and the upsampling run in float32 whatever the policy (the heatmaps are logits).
        self.upsample = keras.layers.UpSampling2D(self.up_scale, interpolation="bilinear", dtype="float32",
                                                  name="kps_score_upsample")

    def build(self, input_shape):
        self.kps_score_lowres.build(tuple(input_shape))
        self.built = True

    def call(self, features):
        logits = tf.cast(self.kps_score_lowres(features), tf.float32)
        return self.upsample(logits) if self.up_scale > 1 else logits

    def compute_output_shape(self, input_shape):
        factor = 2 * self.up_scale
        height, width = input_shape[1], input_shape[2]
        return (input_shape[0], None if height is None else height * factor,
                None if width is None else width * factor, self.num_keypoints)

    def get_config(self):
        config = super().get_config()
        config.update({"num_keypoints": self.num_keypoints, "up_scale": self.up_scale})
        return config
