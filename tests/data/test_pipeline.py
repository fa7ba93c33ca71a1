import numpy as np
import pytest
import tensorflow as tf

from segzoo.data import load
from segzoo.data.pipeline import (
    IMAGENET_MEAN_RGB,
    instance_pad_size,
    instance_train_pipeline,
    semantic_eval_pipeline,
    semantic_train_pipeline,
)


def _position_dataset(height=40, width=52, count=3):
    """Images whose R, G channels are x, y; masks a function of (x, y) with a 255 border."""
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx, yy, np.full_like(xx, 7)], -1).astype(np.uint8)
    mask = ((xx + 2 * yy) % 5).astype(np.uint8)
    mask[:2] = 255
    mask[:, -3:] = 255
    elements = {
        "image": np.repeat(image[None], count, 0),
        "mask": np.repeat(mask[None], count, 0),
        "image_id": np.array([b"a", b"b", b"c"][:count]),
    }
    return tf.data.Dataset.from_tensor_slices(elements), mask


def _expected_mask(x, y, mask):
    return mask[y, x]


def test_semantic_train_crop_flip_consistent():
    ds, mask = _position_dataset()
    out = semantic_train_pipeline(
        ds.repeat(10), 24, 5, scale_range=(1.0, 1.0), photometric=False, seed=3
    )
    flips = 0
    for images, masks in out:
        assert images.dtype == tf.float32 and images.shape[1:] == (24, 24, 3)
        assert masks.dtype == tf.int32 and masks.shape[1:] == (24, 24)
        for img, m in zip(images.numpy(), masks.numpy(), strict=True):
            x, y = img[..., 0].astype(int), img[..., 1].astype(int)
            np.testing.assert_array_equal(m, mask[y, x])  # same pixel in image and mask
            assert abs(np.diff(y[:, 0])).max() == 1 and (np.diff(y[:, 0]) == 1).all()
            flips += x[0, 0] > x[0, -1]
    assert 0 < flips < 30  # both orientations occur


def test_semantic_train_pads_with_mean_and_255():
    ds, mask = _position_dataset(height=10, width=14, count=1)
    images, masks = next(
        iter(
            semantic_train_pipeline(
                ds, (16, 20), 1, scale_range=(1.0, 1.0), flip=False, photometric=False, seed=0
            )
        )
    )
    images, masks = images.numpy()[0], masks.numpy()[0]
    np.testing.assert_array_equal(masks[:10, :14], mask)
    assert (masks[10:] == 255).all() and (masks[:, 14:] == 255).all()
    np.testing.assert_allclose(images[12, 17], IMAGENET_MEAN_RGB, rtol=1e-6)
    np.testing.assert_array_equal(images[:10, :14, 0], np.arange(14)[None].repeat(10, 0))


def test_semantic_train_scale_keeps_ignore_and_labels():
    ds, _ = _position_dataset()
    out = semantic_train_pipeline(ds.repeat(4), 32, 4, seed=1)
    values = set()
    for images, masks in out:
        values |= set(np.unique(masks.numpy()).tolist())
        assert images.numpy().min() >= 0 and images.numpy().max() <= 255
    assert 255 in values and values <= {0, 1, 2, 3, 4, 255}


def test_semantic_train_deterministic_by_seed():
    def batches(seed):
        ds = load("shapes", "train", num_images=12, image_size=40)
        return [(x.numpy(), y.numpy()) for x, y in semantic_train_pipeline(ds, 32, 4, seed=seed)]

    a, b, c = batches(5), batches(5), batches(6)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_semantic_eval_pipeline():
    ds = load("shapes", "val", num_images=3, image_size=(30, 50))
    sizes = [e["mask"].shape for e in ds]
    single = list(semantic_eval_pipeline(ds))
    assert [tuple(m.shape[1:]) for _, m in single] == [tuple(s) for s in sizes]
    images, masks = next(iter(semantic_eval_pipeline(ds, 3)))
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    assert images.shape == (3, h, w, 3) and masks.dtype == tf.int32
    for i, (mh, mw) in enumerate(sizes):
        assert (masks[i, mh:] == 255).numpy().all() and (masks[i, :, mw:] == 255).numpy().all()
    resized, rmasks = next(iter(semantic_eval_pipeline(ds, 2, size=24)))
    assert resized.shape == (2, 24, 24, 3) and rmasks.shape == (2, 24, 24)


def _instance_dataset():
    image = np.zeros((20, 40, 3), np.uint8)
    image[..., 0] = np.arange(40)[None] * 5
    masks = np.zeros((3, 20, 40), np.uint8)
    masks[0, 2:6, 3:10] = 1
    masks[1, 10:20, 30:40] = 1
    masks[2, :, :] = 1
    elements = [
        {
            "image": image,
            "boxes": np.array([[3, 2, 10, 6], [30, 10, 40, 20], [0, 0, 40, 20]], np.float32),
            "classes": np.array([1, 2, 3], np.int32),
            "masks": masks,
            "is_crowd": np.array([False, False, True]),
            "image_id": np.int64(0),
        },
        {
            "image": image,
            "boxes": np.zeros((0, 4), np.float32),
            "classes": np.zeros((0,), np.int32),
            "masks": np.zeros((0, 20, 40), np.uint8),
            "is_crowd": np.zeros((0,), bool),
            "image_id": np.int64(1),
        },
    ]
    signature = {
        "image": tf.TensorSpec([None, None, 3], tf.uint8),
        "boxes": tf.TensorSpec([None, 4], tf.float32),
        "classes": tf.TensorSpec([None], tf.int32),
        "masks": tf.TensorSpec([None, None, None], tf.uint8),
        "is_crowd": tf.TensorSpec([None], tf.bool),
        "image_id": tf.TensorSpec([], tf.int64),
    }
    return tf.data.Dataset.from_generator(lambda: iter(elements), output_signature=signature)


def _box_of(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_instance_train_pipeline_resize_flip_pad():
    assert instance_pad_size(800, 1333) == 1344 and instance_pad_size(128) == 224
    seen_flip = seen_plain = False
    for seed in range(6):
        ds = instance_train_pipeline(
            _instance_dataset(), 40, 2, max_size=100, max_instances=4, seed=seed, shuffle_buffer=0
        )
        images, targets = next(iter(ds))
        # Padded per batch: the largest resized image (40 x 80) rounded up to multiples of 32.
        assert images.shape == (2, 64, 96, 3) and images.dtype == tf.float32
        assert targets["boxes"].shape == (2, 4, 4) and targets["masks"].shape == (2, 4, 64, 96)
        assert targets["classes"].dtype == tf.int32 and targets["masks"].dtype == tf.uint8
        assert "is_crowd" not in targets
        classes = targets["classes"].numpy()
        np.testing.assert_array_equal(classes, [[1, 2, 0, 0], [0, 0, 0, 0]])  # crowd dropped
        assert targets["masks"].numpy()[1].sum() == 0  # the negative is kept
        img, boxes, masks = images.numpy()[0], targets["boxes"].numpy()[0], targets["masks"][0]
        # short side 20 -> 40: scale 2, image 40x80, padded to 64 x 96.
        assert (img[40:] == 0).all() and (img[:, 80:] == 0).all()
        flipped = img[0, 0, 0] > img[0, 79, 0]
        seen_flip |= flipped
        seen_plain |= not flipped
        expected = [[6, 4, 20, 12], [60, 20, 80, 40]]
        if flipped:
            expected = [[80 - 20, 4, 80 - 6, 12], [0, 20, 20, 40]]
        np.testing.assert_allclose(boxes[:2], expected)
        for i in range(2):
            np.testing.assert_array_equal(_box_of(masks[i].numpy()), expected[i])
    assert seen_flip and seen_plain


def test_instance_train_pipeline_keeps_crowd_when_asked():
    ds = instance_train_pipeline(
        _instance_dataset(), 20, 1, max_size=40, drop_crowd=False, flip=False, shuffle_buffer=0
    )
    _, targets = next(iter(ds))
    assert targets["masks"].shape == (1, 3, 32, 64)  # 20 x 40, padded to multiples of 32
    np.testing.assert_array_equal(targets["classes"][0], [1, 2, 3])
    np.testing.assert_array_equal(targets["is_crowd"][0], [False, False, True])


def test_instance_train_pipeline_fixed_pad_size_matches_per_batch_padding():
    """pad_size=P pads every image to P x P; the content equals the per-batch padded batch."""
    common = dict(max_size=100, max_instances=4, seed=3, shuffle_buffer=0)
    fixed = next(iter(instance_train_pipeline(_instance_dataset(), 40, 2, pad_size=128, **common)))
    batch = next(iter(instance_train_pipeline(_instance_dataset(), 40, 2, **common)))
    assert fixed[0].shape == (2, 128, 128, 3) and fixed[1]["masks"].shape == (2, 4, 128, 128)
    np.testing.assert_array_equal(fixed[0].numpy()[:, :64, :96], batch[0].numpy())
    assert (fixed[0].numpy()[:, 64:] == 0).all() and (fixed[0].numpy()[:, :, 96:] == 0).all()
    np.testing.assert_array_equal(fixed[1]["masks"].numpy()[:, :, :64, :96], batch[1]["masks"].numpy())
    np.testing.assert_array_equal(fixed[1]["boxes"].numpy(), batch[1]["boxes"].numpy())
    # A fixed P smaller than the resized long side shrinks the image to fit.
    small = next(iter(instance_train_pipeline(_instance_dataset(), 40, 1, pad_size=64, **common)))
    assert small[0].shape == (1, 64, 64, 3) and small[1]["boxes"].numpy()[0, :2].max() <= 64


def test_instance_pipeline_on_shapes():
    ds = load("shapes", "train", task="instance", num_images=8, image_size=64)
    images, targets = next(iter(instance_train_pipeline(ds, 64, 4, max_size=64, seed=0,
                                                        shuffle_buffer=0)))
    # No cap: the instance rows are the batch's largest count, the others padded with class 0.
    counts = [len(e["classes"]) for e in ds.take(4).as_numpy_iterator()]
    assert images.shape == (4, 64, 64, 3) and targets["masks"].shape == (4, max(counts), 64, 64)
    np.testing.assert_array_equal((targets["classes"].numpy() > 0).sum(1), counts)
    capped = next(iter(instance_train_pipeline(ds, 64, 4, max_size=64, max_instances=100, seed=0)))
    assert capped[1]["masks"].shape == (4, 100, 64, 64)


def test_bad_arguments():
    ds, _ = _position_dataset()
    with pytest.raises(ValueError, match="scale_range"):
        semantic_train_pipeline(ds, 16, 2, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="crop_size"):
        semantic_train_pipeline(ds, (0, 16), 2)
    with pytest.raises(ValueError, match="pad_size"):
        instance_train_pipeline(_instance_dataset(), 20, 1, pad_size=50)


def _reference_jitter(x, brightness, contrast, saturation, hue):
    """Sequential float64 numpy version of the four jitter steps."""
    x = x.astype(np.float64) + brightness
    mean = x.mean(axis=(0, 1))
    x = (x - mean) * contrast + mean
    grey = x @ np.array([0.299, 0.587, 0.114])
    x = grey[..., None] + saturation * (x - grey[..., None])
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq = x @ to_yiq.T
    c, s = np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue)
    i, q = yiq[..., 1].copy(), yiq[..., 2].copy()
    yiq[..., 1], yiq[..., 2] = c * i - s * q, s * i + c * q
    return yiq @ np.linalg.inv(to_yiq).T


def test_color_jitter_affine_matches_sequential_steps():
    from segzoo.data.pipeline import color_jitter_affine

    x = np.random.default_rng(0).uniform(0, 255, (5, 6, 3))
    for factors in [(0.0, 1.0, 1.0, 0.0), (20.0, 1.2, 0.8, 0.05), (-32.0, 0.8, 1.2, -0.05)]:
        a, b = color_jitter_affine(*[tf.constant(f, tf.float32) for f in factors],
                                   tf.constant(x.mean(axis=(0, 1)), tf.float32))  # fmt: skip
        got = x @ a.numpy().T + b.numpy()
        np.testing.assert_allclose(got, _reference_jitter(x, *factors), atol=2e-3)
    # neutral factors: identity (grey stays grey under any hue rotation)
    grey = np.full((1, 1, 3), 77.0)
    a, b = color_jitter_affine(0.0, 1.0, 1.0, 0.05, tf.constant([77.0, 77.0, 77.0]))
    np.testing.assert_allclose(grey @ a.numpy().T + b.numpy(), grey, atol=1e-3)


def test_scaled_crops_keep_image_and_mask_aligned():
    yy, xx = np.mgrid[0:30, 0:50]
    image = np.stack([xx * 4, yy * 4, np.zeros_like(xx)], -1).astype(np.uint8)
    for axis, coordinate in ((0, xx), (1, yy)):
        mask = coordinate.astype(np.uint8)
        ds = tf.data.Dataset.from_tensors({"image": image, "mask": mask}).repeat(24)
        out = semantic_train_pipeline(ds, 24, 8, photometric=False, seed=axis)
        for images, masks in out:
            valid = masks.numpy() != 255
            position = images.numpy()[..., axis] / 4.0  # bilinear-interpolated coordinate
            # nearest-neighbour label of the same output pixel: within half a source pixel
            assert np.abs(position - masks.numpy())[valid].max() <= 0.5 + 1e-3


def test_fixed_scale_whole_image_equals_resize():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.integers(0, 5, (20, 30)).astype(np.uint8)
    ds = tf.data.Dataset.from_tensors({"image": image, "mask": mask})
    out = semantic_train_pipeline(
        ds, 64, 1, scale_range=(1.5, 1.5), flip=False, photometric=False, seed=0
    )
    images, masks = next(iter(out))
    expected = tf.image.resize(image.astype(np.float32), [30, 45], method="bilinear").numpy()
    expected_mask = tf.image.resize(mask[..., None], [30, 45], method="nearest").numpy()[..., 0]
    np.testing.assert_allclose(images[0, :30, :45].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(masks[0, :30, :45].numpy(), expected_mask)
    assert (masks[0, 30:].numpy() == 255).all() and (masks[0, :, 45:].numpy() == 255).all()
