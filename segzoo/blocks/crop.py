"""Crop a feature map to the spatial size of a reference tensor (Caffe's `Crop` layer)."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="segzoo")
class CropToReference(keras.layers.Layer):
    """Crops `x` to the height and width of `reference`, starting at `offset`.

    This is Caffe's `Crop` layer (axis 2) as the FCN nets use it
    (`crop(upscore, data)` with offset 19 in FCN-32s), and U-Net's
    crop-and-concat (`offset="center"`). Works with dynamic H, W.

    Args:
        offset: int (same for rows and columns), `(row, col)` pair of ints, or
            "center" for `((H_x - H_ref) // 2, (W_x - W_ref) // 2)`.
    Call:
        `layer(x, reference)`; x [B, H_x, W_x, C], reference [B, H_ref, W_ref, ...]
            with `offset + H_ref <= H_x` (and likewise for W).
    Returns:
        x[:, oy:oy + H_ref, ox:ox + W_ref, :], dtype of x.
    """

    def __init__(self, offset=0, **kwargs):
        super().__init__(**kwargs)
        if offset == "center":
            self.offset = "center"
        else:
            pair = (offset, offset) if isinstance(offset, int) else tuple(offset)
            if len(pair) != 2 or any(not isinstance(o, int) or o < 0 for o in pair):
                raise ValueError(
                    f"offset must be a non-negative int, a (row, col) pair or 'center', "
                    f"got {offset!r}"
                )
            self.offset = pair

    def call(self, x, reference):
        ref_shape = tf.shape(reference)
        height, width = ref_shape[1], ref_shape[2]
        if self.offset == "center":
            x_shape = tf.shape(x)
            top, left = (x_shape[1] - height) // 2, (x_shape[2] - width) // 2
        else:
            top, left = self.offset
        return x[:, top:top + height, left:left + width, :]

    def compute_output_shape(self, x_shape, reference_shape):
        ref_shape = reference_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        config = super().get_config()
        config["offset"] = self.offset if self.offset == "center" else list(self.offset)
        return config
