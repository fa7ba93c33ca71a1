"""Sliding-window inference: grid, blending against a full-image reference, exactness on
one tile, no seams on an image many tiles wide, and instance tiles merged back."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from pycocotools import mask as mask_utils

from segzoo.inference.instances import Instances, crop_to_rle
from segzoo.inference.tiling import (
    check_tiling,
    sliding_window_labels,
    tile_starts,
    tiled_instances,
    window_1d,
    window_2d,
)
from segzoo.inference.tta import probability_fn


def test_tile_starts_cover_the_axis_with_equal_tiles():
    assert tile_starts(20, 32, 8) == [0]
    assert tile_starts(32, 32, 8) == [0]
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    assert tile_starts(33, 32, 0) == [0, 1]
    for length in range(1, 90):
        starts = tile_starts(length, 16, 5)
        size = min(16, length)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + size] = True
        assert covered.all() and starts[-1] + size == length
        assert all(b - a <= 16 - 5 for a, b in zip(starts, starts[1:], strict=False))
    for tile, overlap in ((0, 0), (16, 16), (16, -1), (8.5, 0)):
        with pytest.raises(ValueError, match="^(tile_size|overlap) must be"):
            check_tiling(tile, overlap)


def test_windows_are_positive_and_peak_in_the_middle():
    for kind in ("gaussian", "linear"):
        w = window_1d(32, 8, kind)
        assert w.min() > 0 and w.max() == 1.0 and np.allclose(w, w[::-1])
    np.testing.assert_allclose(window_1d(8, 4, "linear"), [0.125, 0.375, 0.625, 0.875] * 1
                               + [0.875, 0.625, 0.375, 0.125])
    assert window_2d(4, 6, 2, "linear").shape == (4, 6)


def position_dependent_fn(images):
    """Softmax of the pixel and of its column inside the tile: a "model" whose tiles disagree."""
    images = np.asarray(images, np.float64)
    ramp = np.linspace(-1.0, 1.0, images.shape[2])[None, None, :, None] * np.ones_like(images[..., :1])
    logits = np.concatenate([images / 100.0, ramp], -1)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("window", ["gaussian", "linear"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_blending_equals_a_full_image_accumulator(window, batch_size):
    image = np.random.default_rng(0).integers(0, 255, (70, 150, 3)).astype(np.uint8)
    labels, probabilities = sliding_window_labels(position_dependent_fn, image, 32, 10, window=window,
                                                  batch_size=batch_size, return_probabilities=True)
    total, weights = np.zeros((70, 150, 4)), np.zeros((70, 150))
    w = window_2d(32, 32, 10, window).astype(np.float64)
    for y in tile_starts(70, 32, 10):
        for x in tile_starts(150, 32, 10):
            total[y:y + 32, x:x + 32] += position_dependent_fn(image[None, y:y + 32, x:x + 32])[0] * w[..., None]
            weights[y:y + 32, x:x + 32] += w
    want = total / weights[..., None]
    np.testing.assert_allclose(probabilities, want, atol=1e-6)
    np.testing.assert_array_equal(labels, want.argmax(-1))
    assert labels.dtype == np.uint8 and labels.shape == (70, 150)
    np.testing.assert_array_equal(
        sliding_window_labels(position_dependent_fn, image, 32, 10, window=window), labels)


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    from tests.export.tiny_models import TinySegmenter

    keras.utils.set_random_seed(3)
    model = TinySegmenter(num_classes=3, width=6)
    score = model.layers[-1]
    score.set_weights([w * 30.0 for w in score.get_weights()])  # confident, varied labels
    return model


def test_one_tile_images_are_exactly_the_untiled_prediction(tiny_model):
    fn = probability_fn(tiny_model)
    for shape in ((1, 1, 3), (31, 17, 3), (64, 64, 3)):
        image = np.random.default_rng(1).integers(0, 255, shape).astype(np.uint8)
        untiled = fn(image[None])[0]
        labels, probabilities = sliding_window_labels(fn, image, 64, 16, return_probabilities=True)
        np.testing.assert_array_equal(probabilities, untiled)
        np.testing.assert_array_equal(labels, untiled.argmax(-1))


def test_many_tiles_wide_prediction_has_no_seams(tiny_model):
    """A 48 x 640 image in 32-pixel tiles (26 tiles wide): the convolutions' zero padding at
    every tile edge changes the tile's border pixels; blending keeps those out, cutting the
    image into tiles without blending does not."""
    rng = np.random.default_rng(2)
    smooth = scipy.ndimage.gaussian_filter(rng.uniform(0, 255, (48, 640, 3)), (3, 3, 0))
    image = np.clip(smooth * 3 - 255, 0, 255).astype(np.uint8)
    fn = probability_fn(tiny_model)
    untiled = fn(image[None])[0]
    labels, blended = sliding_window_labels(fn, image, 32, 16, return_probabilities=True)
    assert len(tile_starts(640, 32, 16)) >= 26
    hard = np.empty_like(untiled)  # the seams: tiles side by side, no overlap, no blending
    for y in range(0, 48, 32):
        for x in range(0, 640, 32):
            tile = image[y:y + 32, x:x + 32]
            hard[y:y + tile.shape[0], x:x + tile.shape[1]] = fn(tile[None])[0]
    blended_error, hard_error = np.abs(blended - untiled), np.abs(hard - untiled)
    assert hard_error.max() > 10 * blended_error.max()
    assert blended_error.max() < 5e-3 and blended_error.mean() < 2e-4
    assert (labels == untiled.argmax(-1)).mean() > 0.999
    assert (hard.argmax(-1) == untiled.argmax(-1)).mean() < 0.99  # there, the seams show
    # No column stands out: the largest per-column error is of the order of the others'.
    column_error = blended_error.max(axis=(0, 2))
    assert column_error.max() < 5e-3


# === Instances ===
def test_crop_to_rle_equals_pycocotools_encode_of_the_full_mask():
    rng = np.random.default_rng(0)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(1, 12, 2))
        h, w = int(rng.integers(0, height + 1)), int(rng.integers(0, width + 1))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        crop = rng.random((h, w)) < rng.random()
        full = np.zeros((height, width), np.uint8)
        full[y0:y0 + h, x0:x0 + w] = crop
        want = mask_utils.encode(np.asfortranarray(full))
        got = crop_to_rle(crop, y0, x0, height, width)
        assert got == {"size": [height, width], "counts": want["counts"].decode()}


def test_instances_from_masks_round_trip_and_id_map():
    from segzoo.commands.predict import instance_id_map

    rng = np.random.default_rng(1)
    masks = (rng.random((5, 20, 30)) < 0.2).astype(np.uint8)
    masks[2] = 0  # an empty mask stays an (empty) detection
    scores = np.array([0.3, 0.9, 0.5, 0.7, 0.1], np.float32)
    boxes = rng.uniform(0, 20, (5, 4)).astype(np.float32)
    instances = Instances.from_masks(boxes, scores, np.arange(1, 6), masks)
    order = np.argsort(-scores)
    np.testing.assert_array_equal(instances.scores, scores[order])
    np.testing.assert_array_equal(instances.masks(), masks[order])
    np.testing.assert_array_equal(instances.boxes, boxes[order])
    np.testing.assert_array_equal(instances.id_map(), instance_id_map(masks[order], scores[order], (20, 30)))
    decoded = mask_utils.decode([dict(r, counts=r["counts"].encode()) for r in instances.rles()])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), masks[order])
    np.testing.assert_array_equal(instances.areas(), masks[order].sum((1, 2)))


def blob_detector(image):
    """A stand-in detector: each connected bright-red region of the tile is one detection,
    class 1 (2 where green is also bright); a region cut by the tile edge is detected as
    the piece the tile shows, as a real detector would."""
    red, green = image[..., 0] > 128, image[..., 1] > 128
    components, count = scipy.ndimage.label(red)
    boxes, masks, classes = [], [], []
    for index in range(1, count + 1):
        mask = components == index
        ys, xs = np.nonzero(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        masks.append(mask)
        classes.append(2 if green[mask].mean() > 0.5 else 1)
    n = len(boxes)
    return {"boxes": np.asarray(boxes, np.float32).reshape(n, 4), "scores": np.full(n, 0.9, np.float32),
            "classes": np.asarray(classes, np.int32), "masks": np.asarray(masks, np.uint8).reshape(
                n, *image.shape[:2])}


def test_tiled_instances_merge_objects_across_tile_borders():
    rng = np.random.default_rng(4)
    height, width = 150, 260
    image = np.zeros((height, width, 3), np.uint8)
    truth = np.zeros((height, width), np.int32)
    placed = 0
    while placed < 25:  # squares and discs up to 18 px, some across tile borders (tile 64, step 40)
        size = int(rng.integers(5, 19))
        y, x = int(rng.integers(0, height - size)), int(rng.integers(0, width - size))
        if truth[max(0, y - 2):y + size + 2, max(0, x - 2):x + size + 2].any():
            continue
        placed += 1
        yy, xx = np.mgrid[:size, :size]
        shape = np.ones((size, size), bool) if placed % 2 else (
            (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= (size / 2) ** 2)
        truth[y:y + size, x:x + size][shape] = placed
        image[y:y + size, x:x + size][shape] = (255, 255 if placed % 3 == 0 else 0, 0)
    whole = Instances.from_masks(**blob_detector(image))
    tiled = tiled_instances(blob_detector, image, 64, 24)
    assert len(whole) == 25
    assert len(tiled) == 25  # every object once: the pieces at tile borders are merged away
    key = lambda inst: sorted(zip(map(tuple, inst.boxes.tolist()), inst.classes.tolist(), strict=True))  # noqa: E731
    assert key(tiled) == key(whole)
    order_t, order_w = np.lexsort(tiled.boxes.T[::-1]), np.lexsort(whole.boxes.T[::-1])
    np.testing.assert_array_equal(tiled.masks()[order_t], whole.masks()[order_w])


def test_tiled_instances_on_one_tile_are_the_untiled_detections():
    image = np.zeros((40, 50, 3), np.uint8)
    image[5:15, 5:30, 0] = 255
    image[20:38, 10:20, :2] = 255
    whole = Instances.from_masks(**blob_detector(image))
    tiled = tiled_instances(blob_detector, image, 64, 16)
    np.testing.assert_array_equal(tiled.boxes, whole.boxes)
    np.testing.assert_array_equal(tiled.classes, whole.classes)
    assert tiled.rles() == whole.rles()


def test_tile_offsets_move_boxes_masks_and_keypoints():
    masks = np.zeros((1, 4, 6), np.uint8)
    masks[0, 1:3, 2:5] = 1
    keypoints = np.array([[[1.0, 2.0, 0.9], [3.5, 0.5, 0.2]]], np.float32)
    instances = Instances.from_masks([[2, 1, 5, 3]], [0.8], [1], masks, offset=(10, 20),
                                     image_size=(30, 40), keypoints=keypoints, mask_scores=[0.7])
    np.testing.assert_array_equal(instances.boxes, [[22, 11, 25, 13]])
    np.testing.assert_array_equal(instances.extras["keypoints"][0, :, :2], [[21, 12], [23.5, 10.5]])
    np.testing.assert_allclose(instances.extras["keypoints"][0, :, 2], [0.9, 0.2], rtol=1e-6)
    full = instances.masks()[0]
    assert full.shape == (30, 40) and full.sum() == 6 and full[11:13, 22:25].all()
    assert instances.select([]).extras["mask_scores"].shape == (0,)
