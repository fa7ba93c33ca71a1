"""Mask Scoring R-CNN: the MaskIoU branch wired into the RoI heads and the model (ms_rcnn)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.blocks import MultiLevelRoIPooler
from segzoo.models.mask_rcnn import MaskIoUHead, MaskIoUPredictor, RoIHeads
from segzoo.models.mask_rcnn.box_head import BoxPredictor, TwoMLPHead
from segzoo.models.mask_rcnn.mask_head import MaskHead, MaskPredictor
from segzoo.models.mask_rcnn.matcher import Matcher
from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler
from segzoo.models.mask_rcnn.targets import roi_align_masks
from tests.models.mask_rcnn.test_model import TINY, batch, losses_of

SCORING = {**TINY, "fpn_channels": 16, "representation_size": 32, "mask_head_channels": 16,
           "maskiou_head_channels": 8, "maskiou_representation_size": 16}


def _heads(num_classes=2):
    return RoIHeads(
        MultiLevelRoIPooler(7, sampling_ratio=2), TwoMLPHead(16), BoxPredictor(num_classes),
        Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(4, 1.0),
        mask_roi_pool=MultiLevelRoIPooler(14, sampling_ratio=2), mask_head=MaskHead((8, 8), 8),
        mask_predictor=MaskPredictor(num_classes), maskiou_head=MaskIoUHead((8, 8), 16),
        maskiou_predictor=MaskIoUPredictor(num_classes))


def test_maskiou_loss_uses_iou_targets_against_the_full_gt_area():
    """Proposals = the GT box, so every sampled RoI is that box: the loss is recomputed in numpy
    from the branch outputs and MS R-CNN's target |P & T| / (|P| + max(|T|, area * S^2 / roi_area) - |P & T|)."""
    rng = np.random.default_rng(0)
    pyramid = {f"P{level}": tf.constant(rng.normal(size=(1, 64 // 2**level, 64 // 2**level, 4)), tf.float32)
               for level in range(2, 6)}
    heads = _heads()
    heads.build((None, None, None, 4))
    box = np.array([[[8.0, 8.0, 40.0, 40.0]]], np.float32)
    masks = np.zeros((1, 1, 64, 64), np.uint8)
    masks[0, 0, 8:40, 8:24] = 1  # left half of the box ...
    masks[0, 0, 40:56, 8:24] = 1  # ... and a part outside it: full area 768 px
    targets = {"boxes": box, "classes": np.array([[2]], np.int32), "masks": masks}
    values = heads.compute_losses(pyramid, tf.constant(box), tf.constant([[True]]), targets,
                                  seed=keras.random.SeedGenerator(0))
    assert sorted(values) == ["box_class", "box_regression", "mask", "maskiou"]
    logits, pooled = heads._mask_branch(pyramid, tf.constant(box))
    probs = heads.mask_probabilities(logits, tf.constant([[2]]))
    predicted = heads._maskiou_branch(pooled, probs).numpy()[0, 0, 2]
    grid = roi_align_masks(tf.constant(masks), tf.constant(box), tf.constant([[0]]), 28).numpy()[0, 0] >= 0.5
    p = probs.numpy()[0, 0] > 0.5
    full = max(grid.sum(), 768 * 28 * 28 / (32 * 32))
    iou = (p & grid).sum() / max(p.sum() + full - (p & grid).sum(), 1)
    assert 0 < iou < 0.6  # the part outside the RoI counts in the union
    np.testing.assert_allclose(float(values["maskiou"]), 0.5 * (predicted - iou) ** 2, rtol=1e-4, atol=1e-7)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return segzoo.get_model("ms_rcnn", **SCORING)


def test_mask_scores_are_box_score_times_predicted_maskiou(model):
    assert model.has_mask_scores and model.has_masks and not model.has_keypoints
    assert "maskiou" in model.loss_names and model.roi_heads.maskiou_predictor.num_classes == 3
    # A constant predicted MaskIoU of 0.25 for every class makes the expected score exact.
    layer = model.roi_heads.maskiou_predictor.maskiou
    kernel, bias = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.25)])
    image = np.random.default_rng(1).uniform(0, 255, (1, 48, 80, 3)).astype(np.float32)
    out = {k: v.numpy() for k, v in model(tf.constant(image)).items()}
    assert sorted(out) == sorted(["boxes", "scores", "classes", "masks", "mask_scores", "num_detections"])
    assert out["mask_scores"].shape == (1, 10) and out["mask_scores"].dtype == np.float32
    n = int(out["num_detections"][0])
    assert n > 0
    np.testing.assert_allclose(out["mask_scores"][0, :n], 0.25 * out["scores"][0, :n], rtol=1e-6)
    assert not out["mask_scores"][0, n:].any()
    layer.set_weights([kernel, bias])


def test_ms_rcnn_fits_one_step_and_reports_maskiou(model):
    images, targets = batch()
    before = [w.numpy().copy() for w in model.roi_heads.maskiou_head.weights]
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(tf.data.Dataset.from_tensors((images, targets)), epochs=1, verbose=0).history
    assert sorted(history) == sorted(["loss", "rpn_objectness", "rpn_box", "box_class", "box_regression",
                                      "mask", "maskiou"])
    assert np.isfinite(history["maskiou"][0]) and history["maskiou"][0] > 0
    assert history["loss"][0] == pytest.approx(sum(history[k][0] for k in model.loss_names), rel=1e-5)
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, model.roi_heads.maskiou_head.weights,
                                                              strict=True))
    negatives = losses_of(model, *batch(with_instances=False))
    assert negatives["maskiou"] == 0.0 and negatives["mask"] == 0.0


def test_mask_scoring_needs_masks():
    with pytest.raises(ValueError, match="mask_scoring"):
        segzoo.get_model("mask_rcnn", num_classes=2, backbone="resnet18", mask_scoring=True, masks=False)


@pytest.mark.slow
def test_ms_rcnn_inference_and_losses_compile_with_xla():
    model = segzoo.get_model("ms_rcnn", **SCORING)
    assert model.supports_jit
    images, targets = batch()
    out = tf.function(lambda x: model(x, training=False), jit_compile=True)(tf.constant(images[:1]))
    assert out["mask_scores"].shape == (1, 10) and out["masks"].shape == (1, 10, 64, 64)
    values = tf.function(lambda x, t: model.compute_losses(x, t), jit_compile=True)(images, targets)
    assert all(np.isfinite(float(v)) for v in values.values()) and float(values["maskiou"]) >= 0
