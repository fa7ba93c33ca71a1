"""Gaussian / Laplacian pyramids against OpenCV's pyrDown / pyrUp."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from segzoo.blocks import (
    GaussianPyramid,
    LaplacianPyramid,
    gaussian_pyramid,
    laplacian_pyramid,
    reconstruct_laplacian,
)
from segzoo.blocks.pyramid import pyr_down, pyr_up
from tests.layer_testing import check_layer

SIZES = [(1, 1), (1, 5), (2, 3), (5, 2), (7, 9), (16, 12), (33, 20), (31, 47)]
ATOL = 1e-4  # float32 data in [0, 255]; OpenCV scales once, we scale per axis


def _images(height, width, channels, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((batch, height, width, channels)) * 255).astype(np.float32)


def _cv(fn, images, *args, **kwargs):
    """Applies an OpenCV function image by image; keeps the channel axis."""
    out = [fn(image, *args, **kwargs) for image in images]
    return np.stack([o if o.ndim == 3 else o[..., None] for o in out])


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pyr_down_equals_opencv(height, width, channels):
    images = _images(height, width, channels)
    ours = pyr_down(images).numpy()
    expected = _cv(cv2.pyrDown, images)
    assert ours.shape == (2, (height + 1) // 2, (width + 1) // 2, channels)
    np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("height,width", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_pyr_up_equals_opencv_for_every_allowed_size(height, width, channels):
    images = _images(height, width, channels, seed=1)
    checked = 0
    for out_h in (2 * height - 1, 2 * height, 2 * height + 1):
        for out_w in (2 * width - 1, 2 * width, 2 * width + 1):
            if abs(out_h - 2 * height) > out_h % 2 or abs(out_w - 2 * width) > out_w % 2:
                continue
            if width == 1 and out_w == 3:
                # OpenCV leaves the extra column uninitialised for 1-pixel-wide
                # sources (pyrUp_'s `ssize.width == cn` shortcut skips it).
                continue
            ours = pyr_up(images, (out_h, out_w)).numpy()
            expected = _cv(cv2.pyrUp, images, dstsize=(out_w, out_h))
            assert ours.shape == (2, out_h, out_w, channels)
            np.testing.assert_allclose(ours, expected, atol=ATOL, rtol=0)
            checked += 1
    assert checked >= 2


def test_pyr_up_hand_computed():
    # Along one axis: even outputs (s[i-1] + 6 s[i] + s[i+1]) / 8, odd (s[i] + s[i+1]) / 2,
    # s[-1] = s[1], s[n] = s[n-1]: [5, 7] -> [44/8, 6, 54/8, 7].
    row = np.array([[[[5.0], [7.0]]]], np.float32)
    np.testing.assert_allclose(pyr_up(row, (1, 4)).numpy()[0, 0, :, 0], [5.5, 6.0, 6.75, 7.0])


def test_pyr_up_rejects_unreachable_size():
    with pytest.raises(ValueError, match="size"):
        pyr_up(np.zeros((1, 4, 4, 1), np.float32), (10, 8))


@pytest.mark.parametrize("height,width", [(37, 50), (64, 48), (9, 1)])
def test_gaussian_and_laplacian_equal_opencv(height, width):
    images = _images(height, width, 3, seed=2)
    levels = 4
    gaussian = [g.numpy() for g in gaussian_pyramid(images, levels)]
    laplacian = [x.numpy() for x in laplacian_pyramid(images, levels)]
    assert len(gaussian) == len(laplacian) == levels + 1

    expected = [images]
    for _ in range(levels):
        expected.append(_cv(cv2.pyrDown, expected[-1]))
    for ours, ref in zip(gaussian, expected, strict=True):
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)
    for i in range(levels):
        fine, coarse = expected[i], expected[i + 1]
        size = (fine.shape[2], fine.shape[1])
        ref = fine - _cv(cv2.pyrUp, coarse, dstsize=size)
        np.testing.assert_allclose(laplacian[i], ref, atol=ATOL, rtol=0)
    np.testing.assert_allclose(laplacian[-1], expected[-1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("height,width", [(37, 50), (1, 7), (128, 96)])
def test_reconstruction_is_exact(height, width):
    images = _images(height, width, 3, seed=3)
    pyramid = laplacian_pyramid(images, 5)
    rebuilt = reconstruct_laplacian(pyramid).numpy()
    np.testing.assert_allclose(rebuilt, images, atol=1e-4, rtol=0)
    # float64 input: exact to double rounding.
    pyramid64 = laplacian_pyramid(images.astype(np.float64), 5)
    np.testing.assert_allclose(reconstruct_laplacian(pyramid64).numpy(), images, atol=1e-10)


def test_works_in_tf_data_with_unknown_sizes():
    shapes = [(5, 7), (16, 9), (1, 3)]

    def generate():
        for height, width in shapes:
            yield _images(height, width, 3, batch=1)[0]

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=tf.TensorSpec([None, None, 3], tf.float32))
    dataset = dataset.map(lambda x: (
        tuple(gaussian_pyramid(x, 2)),
        reconstruct_laplacian(laplacian_pyramid(x, 2)) - x,
    ))
    for (height, width), (gauss, error) in zip(shapes, dataset, strict=True):
        assert gauss[2].shape == (((height + 1) // 2 + 1) // 2, ((width + 1) // 2 + 1) // 2, 3)
        expected = cv2.pyrDown(cv2.pyrDown(_images(height, width, 3, batch=1)[0]))
        np.testing.assert_allclose(gauss[2].numpy().reshape(expected.shape), expected, atol=ATOL)
        assert float(tf.reduce_max(tf.abs(error))) < 1e-4


def test_jit_compiled():
    images = _images(9, 13, 2)
    fn = tf.function(lambda x: laplacian_pyramid(x, 2), jit_compile=True)
    for ours, ref in zip(fn(images), laplacian_pyramid(images, 2), strict=True):
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_levels"):
        gaussian_pyramid(np.zeros((1, 4, 4, 1), np.float32), -1)
    with pytest.raises(ValueError, match="float"):
        gaussian_pyramid(np.zeros((1, 4, 4, 1), np.uint8), 1)
    with pytest.raises(ValueError, match="B, H, W, C"):
        gaussian_pyramid(np.zeros((4, 4), np.float32), 1)
    with pytest.raises(ValueError, match="pyramid"):
        reconstruct_laplacian([])


def test_gaussian_pyramid_layer():
    images = _images(13, 10, 3)
    out = check_layer(
        GaussianPyramid, {"num_levels": 2}, images,
        expected_output_shape=[(2, 13, 10, 3), (2, 7, 5, 3), (2, 4, 3, 3)],
    )
    np.testing.assert_allclose(out[2], _cv(cv2.pyrDown, _cv(cv2.pyrDown, images)), atol=ATOL)


def test_laplacian_pyramid_layer():
    images = _images(12, 9, 1)
    out = check_layer(
        LaplacianPyramid, {"num_levels": 2}, images,
        expected_output_shape=[(2, 12, 9, 1), (2, 6, 5, 1), (2, 3, 3, 1)],
    )
    np.testing.assert_allclose(reconstruct_laplacian(out).numpy(), images, atol=1e-4)
