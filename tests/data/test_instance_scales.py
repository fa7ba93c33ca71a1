"""Multi-scale training and large-scale jitter in `instance_train_pipeline`."""

import numpy as np
import pytest

from segzoo.data.pipeline import instance_train_pipeline
from tests.data.test_pipeline import _box_of, _instance_dataset


def test_multi_scale_picks_one_listed_short_side_per_image():
    heights = set()
    ds = instance_train_pipeline(_instance_dataset().take(1).repeat(12), (10, 20, 30), 1,
                                 max_size=1000, flip=False, seed=0, shuffle_buffer=0)
    for images, targets in ds:
        rows_padded = images.shape[1]  # each batch padded to its own size, multiples of 32
        assert images.shape[0] == 1 and rows_padded % 32 == 0 and images.shape[2] % 32 == 0
        image = images.numpy()[0]
        rows = int((np.abs(image).sum(axis=(1, 2)) > 0).sum())
        cols = int((np.abs(image).sum(axis=(0, 2)) > 0).sum())
        heights.add(rows)
        assert rows in (10, 20, 30) and cols in (2 * rows - 1, 2 * rows)
        boxes, masks = targets["boxes"].numpy()[0], targets["masks"].numpy()[0]
        scale = rows / 20
        np.testing.assert_allclose(boxes[0], np.array([3, 2, 10, 6]) * scale, atol=1e-4)
        np.testing.assert_allclose(_box_of(masks[0]), np.array([3, 2, 10, 6]) * scale, atol=1)
    assert heights == {10, 20, 30}


def test_large_scale_jitter_crops_to_target_and_rederives_boxes():
    scales = set()
    kept_counts = set()
    ds = instance_train_pipeline(_instance_dataset().take(1).repeat(10), 32, 1,
                                 scale_jitter=(0.5, 3.0), flip=False, seed=0, shuffle_buffer=0)
    for images, targets in ds:
        classes = targets["classes"].numpy()[0]
        kept = int((classes > 0).sum())
        # Rows: the instances left after the crop (one padding row when none is).
        assert images.shape == (1, 32, 32, 3) and targets["masks"].shape == (1, max(kept, 1), 32, 32)
        kept_counts.add(kept)
        boxes, masks = targets["boxes"].numpy()[0], targets["masks"].numpy()[0]
        for i in range(kept):
            assert masks[i].sum() > 0
            np.testing.assert_array_equal(boxes[i], _box_of(masks[i]))
        assert (masks[kept:] == 0).all() and (boxes[kept:] == 0).all()
        image = images.numpy()[0]
        scales.add(int((image[..., 0].max(axis=1) > 0).sum()))  # rows: min(16 j, 32)
    assert len(scales) > 2  # the scale varies
    assert kept_counts - {0} and len(kept_counts) > 1  # crops drop instances sometimes


def test_scale_arguments_are_checked():
    with pytest.raises(ValueError, match="scale_jitter"):
        instance_train_pipeline(_instance_dataset(), 32, 1, scale_jitter=(2.0, 1.0))
    with pytest.raises(ValueError, match="image_size"):
        instance_train_pipeline(_instance_dataset(), (32, 0), 1)
