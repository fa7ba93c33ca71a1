"""Keypoint R-CNN: the keypoint branch wired into the RoI heads and the model (keypoint_rcnn, mask_rcnn keypoints=True)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.blocks import MultiLevelRoIPooler
from segzoo.models.mask_rcnn import (
    COCO_PERSON_KEYPOINT_NAMES,
    COCO_PERSON_SKELETON,
    KeypointHead,
    RoIHeads,
)
from segzoo.models.mask_rcnn.box_head import BoxPredictor, TwoMLPHead
from segzoo.models.mask_rcnn.keypoint_head import KeypointPredictor
from segzoo.models.mask_rcnn.matcher import Matcher
from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler
from tests.layer_testing import check_model_round_trip
from tests.models.mask_rcnn.test_keypoint_head import _np_keypoint_loss
from tests.models.mask_rcnn.test_model import TINY, batch

SMALL = {**TINY, "fpn_channels": 16, "representation_size": 32, "mask_head_channels": 16,
         "keypoint_head_channels": 8, "keypoint_head_layers": 2, "maskiou_head_channels": 8,
         "maskiou_representation_size": 16}


def _keypoints(num_keypoints=4):
    """Batch of `batch()` with 4 points at the quarters of each GT box as keypoints (v = 2; one unlabelled)."""
    images, targets = batch()
    boxes = targets["boxes"]
    low, high = 0.75 * boxes[..., :2] + 0.25 * boxes[..., 2:], 0.25 * boxes[..., :2] + 0.75 * boxes[..., 2:]
    corners = np.stack([low, np.stack([high[..., 0], low[..., 1]], -1), high,
                        np.stack([low[..., 0], high[..., 1]], -1)], axis=2)
    keypoints = np.concatenate([corners, np.full(corners.shape[:-1] + (1,), 2.0, np.float32)], -1)
    keypoints[targets["classes"] == 0] = 0.0
    keypoints[0, 0, 3, 2] = 0.0  # an unlabelled keypoint does not count
    return images, {**targets, "keypoints": keypoints[:, :, :num_keypoints].astype(np.float32)}


def _np_heatmap_targets(keypoints, roi, size=56):
    """torchvision's keypoints_to_heatmap for one RoI, in numpy (float32 as torch)."""
    x1, y1, x2, y2 = roi.astype(np.float32)
    x, y = keypoints[:, 0], keypoints[:, 1]
    cx = np.floor((x - x1) * np.float32(size / (x2 - x1)))
    cy = np.floor((y - y1) * np.float32(size / (y2 - y1)))
    cx[x == x2], cy[y == y2] = size - 1, size - 1
    valid = (cx >= 0) & (cy >= 0) & (cx < size) & (cy < size) & (keypoints[:, 2] > 0)
    return np.where(valid, cy * size + cx, 0).astype(np.int64), valid


def test_keypoint_loss_is_cross_entropy_over_heatmap_cells_of_the_proposal_box():
    rng = np.random.default_rng(0)
    pyramid = {f"P{level}": tf.constant(rng.normal(size=(1, 64 // 2**level, 64 // 2**level, 4)), tf.float32)
               for level in range(2, 6)}
    heads = RoIHeads(MultiLevelRoIPooler(7, sampling_ratio=2), TwoMLPHead(16), BoxPredictor(1), Matcher(0.5, 0.5),
                     BalancedPositiveNegativeSampler(4, 1.0), keypoint_roi_pool=MultiLevelRoIPooler(14, sampling_ratio=2),
                     keypoint_head=KeypointHead((8, 8)), keypoint_predictor=KeypointPredictor(3))
    heads.build((None, None, None, 4))
    box = np.array([[[6.0, 10.0, 50.0, 40.0]]], np.float32)
    keypoints = np.array([[[[6.0, 10.0, 2], [50.0, 40.0, 1], [30.2, 25.7, 0]]]], np.float32)
    targets = {"boxes": box, "classes": np.array([[1]], np.int32), "keypoints": keypoints}
    values = heads.compute_losses(pyramid, tf.constant(box), tf.constant([[True]]), targets,
                                  seed=keras.random.SeedGenerator(0))
    assert sorted(values) == ["box_class", "box_regression", "keypoint"]
    heatmaps = heads._keypoint_branch(pyramid, tf.constant(box)).numpy()[0]  # [1, 56, 56, 3]
    cells, valid = _np_heatmap_targets(keypoints[0, 0], box[0, 0])
    assert valid.tolist() == [True, True, False] and cells[1] == 55 * 56 + 55  # right / bottom edge: last cell
    expected = _np_keypoint_loss(heatmaps, cells[None], valid[None])
    np.testing.assert_allclose(float(values["keypoint"]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="keypoints"):
        heads.compute_losses(pyramid, tf.constant(box), tf.constant([[True]]),
                             {"boxes": box, "classes": targets["classes"]})


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return segzoo.get_model("keypoint_rcnn", num_keypoints=4, **{k: v for k, v in SMALL.items()
                                                                   if k != "num_classes"}, num_classes=3)


def test_keypoint_rcnn_outputs_keypoints_in_input_pixels_inside_their_boxes(model):
    assert model.has_keypoints and not model.has_masks and not model.has_mask_scores
    assert model.num_keypoints == 4 and model.keypoint_names == [f"keypoint_{i}" for i in range(4)]
    assert model.loss_names == ("rpn_objectness", "rpn_box", "box_class", "box_regression", "keypoint")
    assert not model.supports_jit
    image = np.random.default_rng(1).uniform(0, 255, (1, 40, 100, 3)).astype(np.float32)  # resized x1.6
    out = {k: v.numpy() for k, v in model(tf.constant(image)).items()}
    assert sorted(out) == sorted(["boxes", "scores", "classes", "keypoints", "keypoint_scores", "num_detections"])
    assert out["keypoints"].shape == (1, 10, 4, 3) and out["keypoints"].dtype == np.float32
    assert out["keypoint_scores"].shape == (1, 10, 4) and out["keypoint_scores"].dtype == np.float32
    n = int(out["num_detections"][0])
    assert n > 0
    np.testing.assert_array_equal(out["keypoint_scores"], out["keypoints"][..., 2])
    boxes, points = out["boxes"][0, :n], out["keypoints"][0, :n]
    # Decoded at cell centres inside the (>= 1 px) network-input box, then mapped back per axis.
    assert (points[..., 0] >= boxes[:, None, 0] - 1e-3).all() and (points[..., 0] <= boxes[:, None, 2] + 1).all()
    assert (points[..., 1] >= boxes[:, None, 1] - 1e-3).all() and (points[..., 1] <= boxes[:, None, 3] + 1).all()
    assert not out["keypoints"][0, n:].any()


def test_keypoint_rcnn_fits_one_step(model):
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(tf.data.Dataset.from_tensors(_keypoints()), epochs=1, verbose=0).history
    assert sorted(history) == sorted(["loss", "rpn_objectness", "rpn_box", "box_class", "box_regression",
                                      "keypoint"])
    # Untrained: about log(56 * 56) per keypoint.
    assert history["keypoint"][0] == pytest.approx(np.log(56 * 56), rel=0.25)


def test_mask_rcnn_with_keypoints_and_mask_scoring_round_trips():
    keras.utils.set_random_seed(5)
    model = segzoo.get_model("mask_rcnn", keypoints=True, mask_scoring=True, num_keypoints=17, **SMALL)
    assert model.has_masks and model.has_keypoints and model.has_mask_scores
    assert model.keypoint_names == list(COCO_PERSON_KEYPOINT_NAMES)
    assert model.keypoint_skeleton == list(COCO_PERSON_SKELETON)
    assert model.detection_outputs == ("boxes", "scores", "classes", "masks", "mask_scores", "keypoints",
                                       "keypoint_scores", "num_detections")
    image = np.random.default_rng(2).uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    out = check_model_round_trip(model, image, atol=1e-5, rtol=1e-5)
    assert sorted(out) == sorted(model.detection_outputs) and int(out["num_detections"][0]) > 0
    assert out["keypoints"].shape == (1, 10, 17, 3) and out["masks"].shape == (1, 10, 48, 64)


def test_keypoint_arguments_are_checked():
    with pytest.raises(ValueError, match="keypoint_names has 3 entries"):
        segzoo.get_model("keypoint_rcnn", num_keypoints=4, keypoint_names=["a", "b", "c"], backbone="resnet18")
    with pytest.raises(ValueError, match="out of range"):
        segzoo.get_model("keypoint_rcnn", num_keypoints=2, keypoint_skeleton=[[0, 2]], backbone="resnet18")
