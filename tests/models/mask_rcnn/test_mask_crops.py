"""Box-resolution training masks (issue #11): `mask_crops` + `roi_align_mask_crops` vs the full-image path."""

import numpy as np
import tensorflow as tf

from segzoo.data.pipeline import instance_train_pipeline, mask_crops
from segzoo.models.mask_rcnn.targets import roi_align_mask_crops, roi_align_masks


def _ellipses(height=90, width=120, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    masks, boxes = [], []
    for _ in range(4):
        cy, cx = rng.uniform(15, height - 15), rng.uniform(15, width - 15)
        ry, rx = rng.uniform(5, 30), rng.uniform(5, 40)
        mask = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        masks.append(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return np.stack(masks), np.array(boxes, np.float32)


def _dataset():
    masks, boxes = _ellipses()
    element = {"image": np.zeros((90, 120, 3), np.uint8), "boxes": boxes,
               "classes": np.array([1, 2, 1, 2], np.int32), "masks": masks,
               "is_crowd": np.zeros(4, bool), "image_id": np.int64(0)}
    return tf.data.Dataset.from_tensors(element)


def _rois(boxes, seed=1):
    """Per GT box: itself and jittered copies (shifted / scaled by up to 30%)."""
    rng = np.random.default_rng(seed)
    rois, index = [], []
    for g, (x1, y1, x2, y2) in enumerate(boxes):
        w, h = x2 - x1, y2 - y1
        rois.append([x1, y1, x2, y2])
        index.append(g)
        for _ in range(6):
            dx, dy, dw, dh = rng.uniform(-0.3, 0.3, 4)
            cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
            nw, nh = w * (1 + dw), h * (1 + dh)
            rois.append([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2])
            index.append(g)
    return np.array(rois, np.float32)[None], np.array(index, np.int32)[None]


def test_mask_crop_targets_match_full_image_targets():
    """Same batch (seed: same flip) through both pipeline modes; targets agree within the
    documented tolerance (mean |diff| < 0.02, >= 97% equal after the 0.5 threshold)."""
    for seed in (0, 1):
        common = dict(max_size=400, max_instances=6, seed=seed, shuffle_buffer=0)
        _, full = next(iter(instance_train_pipeline(_dataset(), 180, 1, **common)))
        _, crop = next(iter(instance_train_pipeline(_dataset(), 180, 1, mask_crop_size=56, **common)))
        assert "masks" not in crop and crop["mask_crops"].shape == (1, 6, 56, 56)
        np.testing.assert_array_equal(full["boxes"], crop["boxes"])
        boxes = crop["boxes"].numpy()[0, :4]
        rois, index = _rois(boxes)
        reference = roi_align_masks(full["masks"], rois, index, 28).numpy()
        ours = roi_align_mask_crops(crop["mask_crops"], crop["boxes"], rois, index, 28).numpy()
        assert ours.shape == reference.shape == (1, rois.shape[1], 28, 28)
        assert np.abs(ours - reference).mean() < 0.02
        assert ((ours >= 0.5) == (reference >= 0.5)).mean() >= 0.97
        # The crop's coverage times its box area is the full mask's area (MaskIoU's GT area).
        area = crop["mask_crops"].numpy()[0, :4].mean(axis=(1, 2)) * np.prod(boxes[:, 2:] - boxes[:, :2], 1)
        np.testing.assert_allclose(area, full["masks"].numpy()[0, :4].sum(axis=(1, 2)), rtol=0.05)
        # Padding rows are empty.
        assert (crop["mask_crops"].numpy()[0, 4:] == 0).all()


def test_mask_crops_of_an_axis_aligned_box_is_all_ones_and_roi_outside_reads_zero():
    masks = np.zeros((1, 40, 50), np.uint8)
    masks[0, 10:30, 5:45] = 1
    crops = mask_crops(masks, np.array([[5, 10, 45, 30]], np.float32), 8).numpy()
    np.testing.assert_allclose(crops, 1.0)
    far = roi_align_mask_crops(crops[None], np.array([[[5, 10, 45, 30]]], np.float32),
                               np.array([[[46, 31, 50, 40]]], np.float32), np.zeros((1, 1), np.int32), 4)
    np.testing.assert_allclose(far.numpy(), 0.0)
    inside = roi_align_mask_crops(crops[None], np.array([[[5, 10, 45, 30]]], np.float32),
                                  np.array([[[10, 12, 40, 28]]], np.float32), np.zeros((1, 1), np.int32), 4)
    np.testing.assert_allclose(inside.numpy(), 1.0, atol=1e-6)
