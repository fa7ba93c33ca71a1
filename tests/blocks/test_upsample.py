import keras
import numpy as np
import pytest
import tensorflow as tf

from segzoo.blocks import BilinearInitializer, Upsample2D, bilinear_kernel
from tests.layer_testing import check_layer


def reference_upsample_filt(size):
    """FCN's surgery.upsample_filt, transcribed from the reference code."""
    factor = (size + 1) // 2
    if size % 2 == 1:
        center = factor - 1
    else:
        center = factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def reference_conv_transpose(x, kernel, stride):
    """Plain scatter-add transposed convolution, float64; kernel [k, k, out, in]."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    out = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, kernel.shape[2]))
    for i in range(h):
        for j in range(w):
            for a in range(k):
                for b in range(k):
                    out[:, i * stride + a, j * stride + b, :] += x[:, i, j, :] @ kernel[a, b].T
    return out


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8, 16, 32])
def test_bilinear_kernel_equals_upsample_filt(factor):
    kernel = bilinear_kernel(factor, 3)
    size = 2 * factor - factor % 2
    assert kernel.shape == (size, size, 3, 3) and kernel.dtype == np.float32
    filt = reference_upsample_filt(size)
    for c_out in range(3):
        for c_in in range(3):
            expected = filt if c_out == c_in else np.zeros_like(filt)
            np.testing.assert_allclose(kernel[:, :, c_out, c_in], expected, rtol=0, atol=1e-7)


def test_bilinear_kernel_known_values():
    # factor 2 -> k = 4, centre 1.5: 1-D taps 0.25, 0.75, 0.75, 0.25.
    taps = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel(2, 1)[:, :, 0, 0], np.outer(taps, taps))
    # factor 3 -> k = 5, centre 2: 1/3, 2/3, 1, 2/3, 1/3.
    taps = np.array([1, 2, 3, 2, 1]) / 3
    np.testing.assert_allclose(bilinear_kernel(3, 1)[:, :, 0, 0], np.outer(taps, taps), atol=1e-7)


def test_bilinear_kernel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="factor"):
        bilinear_kernel(0, 3)
    with pytest.raises(ValueError, match="num_channels"):
        bilinear_kernel(2, 0)


def test_initializer_shapes_and_config():
    init = BilinearInitializer(4)
    value = keras.ops.convert_to_numpy(init((8, 8, 5, 5)))
    np.testing.assert_array_equal(value, bilinear_kernel(4, 5))
    config = keras.saving.serialize_keras_object(init)
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, BilinearInitializer) and clone.factor == 4
    for bad in [(7, 7, 5, 5), (8, 8, 5, 4), (8, 8, 5)]:
        with pytest.raises(ValueError, match=r"\[8, 8, C, C\]"):
            init(bad)


@pytest.mark.parametrize("factor,size", [(2, (5, 7)), (3, (4, 6)), (4, (6, 5)), (8, (3, 4))])
def test_bilinear_transposed_equals_resize_inside_the_image(factor, size):
    x = np.random.default_rng(0).uniform(-1, 1, (2, *size, 3)).astype(np.float32)
    layer = Upsample2D(factor, "bilinear_transposed")
    ours = keras.ops.convert_to_numpy(layer(x))
    h, w = size
    assert ours.shape == (2, h * factor, w * factor, 3)
    resized = tf.image.resize(x, (h * factor, w * factor), "bilinear").numpy()
    # Output pixels with both interpolation neighbours inside the image.
    lo = factor // 2
    inside = (slice(None), slice(lo, h * factor - lo), slice(lo, w * factor - lo))
    np.testing.assert_allclose(ours[inside], resized[inside], atol=1e-5)
    if factor > 1:
        # At the border resize clamps while the convolution fades: they differ.
        assert np.abs(ours[:, 0] - resized[:, 0]).max() > 1e-3


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_full_output_is_the_plain_transposed_convolution(factor):
    x = np.random.default_rng(1).uniform(-1, 1, (1, 4, 5, 2)).astype(np.float32)
    full = keras.ops.convert_to_numpy(Upsample2D(factor, full_output=True)(x))
    expected = reference_conv_transpose(x.astype(np.float64), bilinear_kernel(factor, 2), factor)
    np.testing.assert_allclose(full, expected, atol=1e-5)
    cropped = keras.ops.convert_to_numpy(Upsample2D(factor)(x))
    lo = factor // 2
    np.testing.assert_allclose(cropped, full[:, lo:lo + 4 * factor, lo:lo + 5 * factor], atol=1e-6)


def test_nearest_equals_repeat():
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 4, 2)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(Upsample2D(3, "nearest")(x))
    np.testing.assert_array_equal(ours, np.repeat(np.repeat(x, 3, axis=1), 3, axis=2))


def test_bilinear_mode_equals_resize_and_full_output_pads_symmetrically():
    x = np.random.default_rng(3).uniform(0, 1, (1, 3, 5, 2)).astype(np.float32)
    resized = tf.image.resize(x, (12, 20), "bilinear").numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Upsample2D(4, "bilinear")(x)), resized,
                               atol=1e-6)
    full = keras.ops.convert_to_numpy(Upsample2D(4, "bilinear", full_output=True)(x))
    assert full.shape == (1, 2 * 4 + 8, 4 * 4 + 8, 2)
    np.testing.assert_allclose(full[:, 2:14, 2:22], resized, atol=1e-6)
    np.testing.assert_allclose(full[:, 1, 2:22], resized[:, 0], atol=1e-6)
    np.testing.assert_allclose(full[:, 0, 2:22], resized[:, 1], atol=1e-6)


def test_transposed_modes_trainability():
    x = np.zeros((1, 2, 2, 4), np.float32)
    frozen = Upsample2D(2, "bilinear_transposed")
    frozen(x)
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 1
    learnable = Upsample2D(2, "bilinear_transposed", learnable=True)
    learnable(x)
    assert len(learnable.trainable_weights) == 1
    learned = Upsample2D(2, "transposed")
    learned(x)
    assert len(learned.trainable_weights) == 1
    # Random (Glorot) start, not the bilinear kernel.
    assert not np.allclose(keras.ops.convert_to_numpy(learned.kernel), bilinear_kernel(2, 4))
    assert Upsample2D(2, "bilinear").weights == []


def test_dynamic_spatial_size():
    layer = Upsample2D(4, "bilinear_transposed", full_output=True)
    fn = tf.function(layer.__call__, input_signature=[tf.TensorSpec([None, None, None, 3])])
    out = fn(tf.zeros((1, 5, 7, 3)))
    assert tuple(out.shape) == (1, 4 * 4 + 8, 6 * 4 + 8, 3)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "transposed", "bilinear_transposed"])
@pytest.mark.parametrize("full_output", [False, True])
def test_check_layer(mode, full_output):
    x = np.random.default_rng(4).uniform(0, 1, (2, 4, 3, 2)).astype(np.float32)
    shape = (2, 3 * 2 + 4, 2 * 2 + 4, 2) if full_output else (2, 8, 6, 2)
    check_layer(
        Upsample2D,
        {"factor": 2, "mode": mode, "learnable": mode == "bilinear_transposed",
         "full_output": full_output},
        x,
        expected_output_shape=shape,
    )


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        Upsample2D(2, "bicubic")
