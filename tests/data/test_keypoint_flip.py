import numpy as np
import pytest
import tensorflow as tf

from segzoo.data import get_info, load
from segzoo.data.keypoints import COCO_PERSON_KEYPOINTS, flip_indices
from segzoo.data.pipeline import instance_train_pipeline

NAMES = ("nose", "left_eye", "right_eye", "top_left", "Right_Hand", "left_hand")


def test_flip_indices_swap_left_and_right_words():
    # top_left has no top_right here: it stays, with a warning; names match ignoring case.
    with pytest.warns(UserWarning, match=r"\['top_left'\] have no left/right partner"):
        assert flip_indices(NAMES) == [0, 2, 1, 3, 5, 4]
    # torchvision's hard-coded COCO person flip (references/detection/transforms.py).
    assert flip_indices(COCO_PERSON_KEYPOINTS) == [
        0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # fmt: skip
    assert flip_indices(("top", "left", "right", "bottom")) == [0, 2, 1, 3]


def _keypoint_dataset():
    image = np.zeros((20, 40, 3), np.uint8)
    image[..., 0] = np.arange(40)[None] * 5  # red grows to the right: tells a flip
    masks = np.zeros((2, 20, 40), np.uint8)
    masks[0, 2:12, 3:12] = 1
    masks[1, 5:15, 25:35] = 1
    # (nose, left_eye, right_eye, top_left, Right_Hand, left_hand); the second person unlabelled
    points = np.zeros((2, 6, 3), np.float32)
    points[0] = [[7, 4, 2], [5, 3, 2], [9, 3, 1], [3, 2, 2], [11, 10, 2], [0, 0, 0]]
    element = {
        "image": image[None],
        "boxes": np.array([[[3, 2, 12, 12], [25, 5, 35, 15]]], np.float32),
        "classes": np.array([[1, 1]], np.int32),
        "masks": masks[None],
        "is_crowd": np.zeros((1, 2), bool),
        "keypoints": points[None],
        "image_id": np.array([0], np.int64),
    }
    return tf.data.Dataset.from_tensor_slices(element), points


def _torchvision_flip(points, width, order):
    """torchvision references/detection/transforms.py `_flip_coco_person_keypoints`
    (flip_inds, then x = width - x), with segzoo's zeroed unlabelled points."""
    flipped = points[:, order].copy()
    flipped[..., 0] = width - flipped[..., 0]
    flipped[flipped[..., 2] == 0] = 0
    return flipped


def test_pipeline_scales_flips_and_swaps_keypoints():
    ds, points = _keypoint_dataset()
    order = [0, 2, 1, 3, 5, 4]
    seen = set()
    for seed in range(8):
        pipe = instance_train_pipeline(ds, 40, 1, max_size=100, max_instances=3, seed=seed,
                                       shuffle_buffer=0, keypoint_flip_indices=order)
        images, targets = next(iter(pipe))
        keypoints = targets["keypoints"].numpy()[0]
        assert keypoints.shape == (3, 6, 3) and keypoints.dtype == np.float32
        flipped = bool(images.numpy()[0, 0, 0, 0] > images.numpy()[0, 0, 79, 0])
        seen.add(flipped)
        scaled = points * np.float32([2, 2, 1])  # short side 20 -> 40
        expected = _torchvision_flip(scaled, 80.0, order) if flipped else scaled
        np.testing.assert_allclose(keypoints[:2], expected, atol=1e-5)
        assert not keypoints[2].any()  # padding row
        if flipped:  # the mirrored right eye is the left eye, at the mirrored x
            np.testing.assert_allclose(keypoints[0, 1], [80 - 18, 6, 1])
            np.testing.assert_allclose(keypoints[0, 2], [80 - 10, 6, 2])
    assert seen == {True, False}


def test_flipped_shapes_keypoints_stay_the_extreme_points():
    """After a flip, "left" is still the leftmost point: without the swap it would be the right."""
    info = get_info("shapes", task="instance", keypoints=True)
    order = flip_indices(info.keypoint_names)
    ds = load("shapes", "val", task="instance", keypoints=True, num_images=16, image_size=64)
    pipe = instance_train_pipeline(ds, 64, 16, max_size=64, seed=3, shuffle_buffer=0,
                                   keypoint_flip_indices=order)
    images, targets = next(iter(pipe))
    boxes, classes = targets["boxes"].numpy(), targets["classes"].numpy()
    keypoints = targets["keypoints"].numpy()
    checked = 0
    for b in range(16):
        for i in np.flatnonzero(classes[b]):
            (x1, y1, x2, y2), kp = boxes[b, i], keypoints[b, i]
            edges = np.asarray([kp[0, 1] - 0.5 - y1, kp[1, 0] - 0.5 - x1,
                                x2 - kp[2, 0] - 0.5, y2 - kp[3, 1] - 0.5])  # fmt: skip
            visible = kp[:, 2] == 2
            np.testing.assert_allclose(edges[visible], 0.0, atol=1e-4)
            checked += int(visible.sum())
    assert checked > 40


def test_keypoints_without_flip_indices_is_an_error():
    ds, _ = _keypoint_dataset()
    with pytest.raises(ValueError, match="keypoint_flip_indices"):
        instance_train_pipeline(ds, 40, 1)
    with pytest.raises(ValueError, match="permutation"):
        instance_train_pipeline(ds, 40, 1, keypoint_flip_indices=[0, 1, 2])
    _, targets = next(iter(instance_train_pipeline(ds, 40, 1, flip=False, shuffle_buffer=0)))
    assert targets["keypoints"].shape == (1, 2, 6, 3)  # the two people, no padding rows
