"""Gaussian and Laplacian image pyramids in TensorFlow, equal to OpenCV.

The seed notes (image pyramids, before FPN): a Gaussian pyramid blurs with the
5x5 binomial kernel ``[1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256`` and drops every
other row and column; a Laplacian level is a Gaussian level minus the
upsampled, blurred next level, where the upsampling blur uses the same kernel
times 4 (zero insertion removes three samples in four, the factor 4 keeps the
brightness).

The functions reproduce ``cv2.pyrDown`` / ``cv2.pyrUp`` number for number:

- ``pyr_down``: ``out[y, x] = sum_ij k[i, j] * in[2y + i - 2, 2x + j - 2]``
  with BORDER_REFLECT_101 (``in[-1] = in[1]``, ``in[n] = in[n - 2]``;
  a size-1 axis repeats its only pixel), output size ``((H + 1) // 2,
  (W + 1) // 2)``.
- ``pyr_up(images, size)``: zero-insert to ``(2h, 2w)``, reflect-101 border on
  that grid, blur with ``4 * k``. Written without the zeros: along one axis
  even outputs are ``(s[i-1] + 6 s[i] + s[i+1]) / 8`` and odd outputs
  ``(s[i] + s[i+1]) / 2``, with ``s[-1] = s[1]`` and ``s[n] = s[n-1]``.
  ``size`` may be ``2h`` or, for odd sizes, ``2h - 1`` (crop; this is the
  Laplacian case, since pyrDown rounds up) or ``2h + 1``, where OpenCV
  copies column ``2w - 1`` into the extra last column and row ``2h - 2``
  into the extra last row (pyrUp_ in OpenCV's ``pyramids.cpp``).

Everything is pure TensorFlow (slices, gathers, adds), works on dynamic shapes
inside ``tf.data`` and ``tf.function``, and keeps the input float dtype.
OpenCV sums integer weights and scales once at the end; here the scale is
applied per axis, so float32 results differ from OpenCV by rounding only
(about 1e-5 for data in [0, 255]).
"""

from __future__ import annotations

import keras
import tensorflow as tf

__all__ = [
    "pyr_down",
    "pyr_up",
    "gaussian_pyramid",
    "laplacian_pyramid",
    "reconstruct_laplacian",
    "GaussianPyramid",
    "LaplacianPyramid",
]


def _as_batched(images, name):
    images = tf.convert_to_tensor(images)
    if images.shape.rank not in (3, 4):
        raise ValueError(
            f"`{name}` must be [B, H, W, C] (or one image [H, W, C]); "
            f"received shape {images.shape}."
        )
    if not images.dtype.is_floating:
        raise ValueError(
            f"`{name}` must be a float tensor (cast uint8 images to float32 first); "
            f"received dtype {images.dtype.name}."
        )
    single = images.shape.rank == 3
    return (images[tf.newaxis] if single else images), single


def _reflect101(indices, n):
    """Maps integer indices into [0, n) with OpenCV's BORDER_REFLECT_101."""
    if_single = tf.zeros_like(indices)
    period = tf.maximum(2 * n - 2, 1)
    folded = tf.math.floormod(tf.abs(indices), period)
    folded = tf.where(folded >= n, period - folded, folded)
    return tf.where(n == 1, if_single, folded)


def _down_axis(x, axis):
    """Blur with [1, 4, 6, 4, 1] / 16 and keep every other sample along `axis`."""
    n = tf.shape(x)[axis]
    out = (n + 1) // 2
    padded = tf.gather(x, _reflect101(tf.range(-2, n + 2), n), axis=axis)
    # padded index p corresponds to input index p - 2; output y reads 2y + t - 2.
    taps = [tf.gather(padded, tf.range(t, t + 2 * out, 2), axis=axis) for t in range(5)]
    dtype = x.dtype
    return (
        (taps[0] + taps[4]) + tf.constant(4.0, dtype) * (taps[1] + taps[3])
        + tf.constant(6.0, dtype) * taps[2]
    ) / tf.constant(16.0, dtype)


def _up_axis(x, size, axis):
    """OpenCV pyrUp along `axis` (rank-4 x, axis 1 or 2) to `size` samples."""
    n = tf.shape(x)[axis]
    dtype = x.dtype
    # s[-1] = s[1] (reflect-101 of the zero-inserted grid), s[n] = s[n - 1].
    index = tf.concat([[tf.minimum(1, n - 1)], tf.range(n), [n - 1]], axis=0)
    padded = tf.gather(x, index, axis=axis)
    prev = tf.gather(padded, tf.range(0, n), axis=axis)
    cur = tf.gather(padded, tf.range(1, n + 1), axis=axis)
    nxt = tf.gather(padded, tf.range(2, n + 2), axis=axis)
    even = (prev + nxt + tf.constant(6.0, dtype) * cur) / tf.constant(8.0, dtype)
    odd = (cur + nxt) / tf.constant(2.0, dtype)
    both = tf.stack([even, odd], axis=axis + 1)
    shape = tf.shape(x)
    new_shape = tf.tensor_scatter_nd_update(shape, [[axis]], [2 * n])
    full = tf.reshape(both, new_shape)
    # size in {2n - 1, 2n, 2n + 1}: crop, keep, or extend like OpenCV (the extra
    # column repeats column 2n - 1, the extra row repeats row 2n - 2).
    positions = tf.range(size)
    source = 2 * n - 1 if axis == 2 else 2 * n - 2
    index = tf.where(positions >= 2 * n, source, positions)
    return tf.gather(full, index, axis=axis)


def pyr_down(images):
    """One pyrDown step, equal to ``cv2.pyrDown``.

    Args:
        images: float [B, H, W, C] (or [H, W, C]), any H, W >= 1.
    Returns:
        same dtype, [B, (H + 1) // 2, (W + 1) // 2, C].
    """
    x, single = _as_batched(images, "images")
    x = _down_axis(_down_axis(x, 1), 2)
    return x[0] if single else x


def pyr_up(images, size=None):
    """One pyrUp step, equal to ``cv2.pyrUp(image, dstsize=(W, H))``.

    Args:
        images: float [B, h, w, C] (or [h, w, C]).
        size: (H, W) output size, ints or scalar int32 tensors; default
            (2h, 2w). Each of H, W must be 2n, or 2n +- 1 (as OpenCV requires
            ``|H - 2h| <= H % 2``); checked when the sizes are static.
    Returns:
        same dtype, [B, H, W, C].
    """
    x, single = _as_batched(images, "images")
    if size is None:
        shape = tf.shape(x)
        size = (2 * shape[1], 2 * shape[2])
    height, width = size
    for requested, source in ((height, x.shape[1]), (width, x.shape[2])):
        if isinstance(requested, int) and source is not None:
            if abs(requested - 2 * source) > requested % 2:
                raise ValueError(
                    f"`size` {tuple(size)} is not reachable by pyrUp from "
                    f"{(x.shape[1], x.shape[2])}: each output side must be 2n, or "
                    "2n +- 1 when odd (OpenCV's rule |dst - 2 * src| <= dst % 2)."
                )
    x = _up_axis(x, tf.convert_to_tensor(height, tf.int32), axis=1)
    x = _up_axis(x, tf.convert_to_tensor(width, tf.int32), axis=2)
    return x[0] if single else x


def _check_levels(num_levels):
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 0:
        raise ValueError(
            f"`num_levels` must be an int >= 0 (the number of pyrDown steps); "
            f"received {num_levels!r}."
        )


def gaussian_pyramid(images, num_levels):
    """Gaussian pyramid ``[G0, G1, ..., G_L]``, ``L = num_levels``.

    Args:
        images: float [B, H, W, C] (or [H, W, C]), e.g. float32 in [0, 255].
        num_levels: int >= 0, the number of pyrDown steps.
    Returns:
        list of ``num_levels + 1`` tensors; G0 is `images`, G_{i+1} =
        ``cv2.pyrDown(G_i)`` with size ``((H_i + 1) // 2, (W_i + 1) // 2)``.
    """
    _check_levels(num_levels)
    x, single = _as_batched(images, "images")
    levels = [x]
    for _ in range(num_levels):
        levels.append(pyr_down(levels[-1]))
    return [level[0] for level in levels] if single else levels


def laplacian_pyramid(images, num_levels):
    """Laplacian pyramid ``[L0, ..., L_{L-1}, G_L]``, ``L = num_levels``.

    ``L_i = G_i - pyr_up(G_{i+1}, size of G_i)`` (as ``cv2.subtract(G_i,
    cv2.pyrUp(G_{i+1}, dstsize=G_i's size))``); the last entry is the coarsest
    Gaussian level, so the list has ``num_levels + 1`` tensors and
    `reconstruct_laplacian` inverts it exactly.

    Args:
        images: float [B, H, W, C] (or [H, W, C]).
        num_levels: int >= 0.
    Returns:
        list of tensors of the input dtype, sizes as in `gaussian_pyramid`.
    """
    gaussian = gaussian_pyramid(images, num_levels)
    out = []
    for fine, coarse in zip(gaussian[:-1], gaussian[1:], strict=True):
        shape = tf.shape(fine)
        size = (shape[-3], shape[-2])
        out.append(fine - pyr_up(coarse, size))
    out.append(gaussian[-1])
    return out


def reconstruct_laplacian(pyramid):
    """Inverts `laplacian_pyramid`: ``G_i = L_i + pyr_up(G_{i+1})``, from the top.

    Args:
        pyramid: list ``[L0, ..., L_{L-1}, G_L]`` as returned by `laplacian_pyramid`.
    Returns:
        the images G0, [B, H, W, C] (or [H, W, C]), equal to the original up
        to float rounding.
    """
    if not isinstance(pyramid, (list, tuple)) or len(pyramid) == 0:
        raise ValueError(
            "`pyramid` must be a non-empty list [L0, ..., L_{L-1}, G_L]; "
            f"received {type(pyramid).__name__}."
        )
    image = tf.convert_to_tensor(pyramid[-1])
    for detail in reversed(pyramid[:-1]):
        detail = tf.convert_to_tensor(detail)
        shape = tf.shape(detail)
        image = detail + pyr_up(image, (shape[-3], shape[-2]))
    return image


@keras.saving.register_keras_serializable(package="segzoo")
class GaussianPyramid(keras.layers.Layer):
    """Keras layer returning `gaussian_pyramid(images, num_levels)` (a list).

    Input float [B, H, W, C]; output ``num_levels + 1`` tensors, level i of
    size ``ceil(H / 2**i)`` x ``ceil(W / 2**i)`` (OpenCV's rounding). No weights.
    """

    def __init__(self, num_levels=3, **kwargs):
        super().__init__(**kwargs)
        _check_levels(num_levels)
        self.num_levels = num_levels

    def call(self, images):
        return gaussian_pyramid(images, self.num_levels)

    def compute_output_shape(self, input_shape):
        return [_level_shape(input_shape, i) for i in range(self.num_levels + 1)]

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels}


@keras.saving.register_keras_serializable(package="segzoo")
class LaplacianPyramid(GaussianPyramid):
    """Keras layer returning `laplacian_pyramid(images, num_levels)` (a list).

    Input float [B, H, W, C]; output ``[L0, ..., L_{L-1}, G_L]``. No weights.
    """

    def call(self, images):
        return laplacian_pyramid(images, self.num_levels)


def _level_shape(input_shape, level):
    batch, height, width, channels = input_shape
    for _ in range(level):
        height = None if height is None else (height + 1) // 2
        width = None if width is None else (width + 1) // 2
    return (batch, height, width, channels)
