"""Upsampling: bilinear kernels for `conv2d_transpose` and one layer for the seed's modes.

The seed names three ways to upsample a feature map by an integer factor `f`:
repeat each pixel (`nearest`), resize by bilinear interpolation (`bilinear`),
and a transposed convolution, either learned from a random start
(`transposed`) or initialised as a bilinear interpolator the way FCN does it
(`bilinear_transposed`).

Alignment. A transposed convolution with kernel `k = 2f - f % 2`, stride `f`
and no padding maps an input of `n` pixels to `(n - 1) * f + k` pixels; input
pixel `i` lands on output pixel `i * f + c` where `c` is the kernel centre
(`f - 0.5` for even `f`, `f - 1` for odd `f`). Half-pixel bilinear resize
(`tf.image.resize`, `half_pixel_centers=True`) puts input pixel `i` at output
coordinate `(i + 0.5) * f - 0.5`. The two agree after cropping `f // 2`
pixels from the top/left of the transposed convolution's output (and
`f // 2` from the bottom/right, leaving exactly `n * f`); inside the image,
where both neighbours of an output pixel exist (output rows/cols
`[f // 2, n * f - f // 2)`), the bilinear-initialised transposed convolution
then *equals* `tf.image.resize(x, (n*f, m*f), "bilinear")`. Near the border the
transposed convolution fades towards zero where resize clamps to the edge.
`nearest` (repeat) has the same alignment: pixel `i` covers `[i*f, (i+1)*f)`.

`Upsample2D(full_output=True)` returns the uncropped Caffe `Deconvolution`
geometry for every mode (the resize modes are padded by `f // 2` on each side
by symmetric reflection), so the crop offsets of the Caffe FCN nets hold for
all modes.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

MODES = ("nearest", "bilinear", "transposed", "bilinear_transposed")


def _check_factor(factor) -> int:
    if isinstance(factor, bool) or int(factor) != factor or int(factor) < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    return int(factor)


def kernel_size_for_factor(factor: int) -> int:
    """`2 * factor - factor % 2`: the transposed-convolution kernel size for `factor`."""
    factor = _check_factor(factor)
    return 2 * factor - factor % 2


def upsample_filt(size: int) -> np.ndarray:
    """FCN's `surgery.upsample_filt`: a 2-D bilinear kernel, float64 [size, size]."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def bilinear_kernel(factor: int, num_channels: int) -> np.ndarray:
    """Bilinear upsampling kernel for `conv2d_transpose` with stride `factor`.

    Args:
        factor: integer upsampling factor `f` (the stride).
        num_channels: C; each channel is upsampled independently.
    Returns:
        float32 [k, k, C, C], `k = 2 * f - f % 2`, in Keras `Conv2DTranspose`
        layout (kernel_h, kernel_w, out_channels, in_channels):
        `kernel[:, :, c, c]` is FCN's `upsample_filt(k)`, off-diagonal entries are 0.
    """
    size = kernel_size_for_factor(factor)
    if isinstance(num_channels, bool) or int(num_channels) != num_channels or num_channels < 1:
        raise ValueError(f"num_channels must be a positive integer, got {num_channels!r}")
    num_channels = int(num_channels)
    kernel = np.zeros((size, size, num_channels, num_channels), dtype=np.float32)
    filt = upsample_filt(size).astype(np.float32)
    channels = np.arange(num_channels)
    kernel[:, :, channels, channels] = filt[:, :, None]
    return kernel


@keras.saving.register_keras_serializable(package="segzoo")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose` kernel as bilinear upsampling by `factor`.

    The variable's shape must be `[k, k, C, C]` with `k = 2 * factor - factor % 2`
    (the layout of `bilinear_kernel`); anything else raises `ValueError`.
    """

    def __init__(self, factor: int):
        self.factor = _check_factor(factor)

    def __call__(self, shape, dtype=None):
        shape = tuple(int(s) for s in shape)
        size = kernel_size_for_factor(self.factor)
        if len(shape) != 4 or shape[0] != size or shape[1] != size or shape[2] != shape[3]:
            raise ValueError(
                f"BilinearInitializer(factor={self.factor}) needs a kernel of shape "
                f"[{size}, {size}, C, C] (kernel size 2*factor - factor%2, as many outputs "
                f"as inputs), got {list(shape)}"
            )
        return keras.ops.convert_to_tensor(
            bilinear_kernel(self.factor, shape[2]), dtype=dtype or keras.config.floatx()
        )

    def get_config(self):
        return {"factor": self.factor}


@keras.saving.register_keras_serializable(package="segzoo")
class Upsample2D(keras.layers.Layer):
    """Upsamples NHWC feature maps by an integer factor, by one of the seed's modes.

    Args:
        factor: integer factor `f`.
        mode: "nearest" (repeat each pixel f x f), "bilinear" (`tf.image.resize`,
            half-pixel centres), "transposed" (learned transposed convolution,
            Glorot-uniform initialised, no bias), "bilinear_transposed"
            (transposed convolution without bias initialised by
            `BilinearInitializer(f)`; frozen unless `learnable=True`).
        learnable: only for "bilinear_transposed": whether the kernel trains.
        full_output: False: the output is `[B, f*H, f*W, C]`, aligned with
            half-pixel resize. True: the uncropped transposed-convolution
            geometry `[B, (H-1)*f + k, (W-1)*f + k, C]`, `k = 2f - f % 2`
            (Caffe's Deconvolution layer, as the FCN nets use it); the default
            output is this cropped by `f // 2` on each side. For the resize modes
            the resized map is padded by `f // 2` by symmetric reflection.
    Call:
        inputs: float [B, H, W, C] (H, W may be dynamic).
    Returns:
        same dtype, shape as described under `full_output`. Transposed modes
        have a `kernel` weight [k, k, C, C] (C from the input at build time).
    """

    def __init__(self, factor, mode="bilinear_transposed", learnable=False, full_output=False,
                 **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Upsample2D mode must be one of {MODES}, got {mode!r}")
        self.factor = _check_factor(factor)
        self.mode = mode
        self.learnable = bool(learnable)
        self.full_output = bool(full_output)
        self.kernel_size = kernel_size_for_factor(self.factor)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("Upsample2D needs a known channel count (last input dimension)")
        if self.mode in ("transposed", "bilinear_transposed"):
            bilinear = self.mode == "bilinear_transposed"
            self.kernel = self.add_weight(
                name="kernel",
                shape=(self.kernel_size, self.kernel_size, channels, channels),
                initializer=BilinearInitializer(self.factor) if bilinear else "glorot_uniform",
                trainable=self.learnable or not bilinear,
            )

    def call(self, inputs):
        f = self.factor
        shape = tf.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        if self.mode in ("transposed", "bilinear_transposed"):
            k = self.kernel_size
            kernel = keras.ops.cast(self.kernel, inputs.dtype)
            out_h, out_w = (height - 1) * f + k, (width - 1) * f + k
            outputs = tf.nn.conv2d_transpose(
                inputs, kernel, tf.stack([batch, out_h, out_w, tf.shape(kernel)[2]]),
                strides=f, padding="VALID",
            )
            if not self.full_output:
                outputs = outputs[:, f // 2: f // 2 + height * f, f // 2: f // 2 + width * f, :]
            return outputs
        if self.mode == "nearest":
            outputs = tf.repeat(tf.repeat(inputs, f, axis=1), f, axis=2)
        else:
            outputs = tf.image.resize(inputs, tf.stack([height * f, width * f]), "bilinear")
            outputs = tf.cast(outputs, inputs.dtype)
        if self.full_output and f // 2:
            pad = f // 2
            outputs = tf.pad(outputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
        return outputs

    def compute_output_shape(self, input_shape):
        f, k = self.factor, self.kernel_size

        def size(n):
            if n is None:
                return None
            return (n - 1) * f + k if self.full_output else n * f

        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(
            factor=self.factor, mode=self.mode, learnable=self.learnable,
            full_output=self.full_output,
        )
        return config
