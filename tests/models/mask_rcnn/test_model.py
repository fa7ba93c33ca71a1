"""MaskRCNN end to end on a tiny configuration (ResNet-18, 64-px inputs, few proposals)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.models.mask_rcnn import MaskRCNN
from segzoo.models.weights import load_weights_by_name
from tests.layer_testing import check_model_round_trip

TINY = dict(
    num_classes=3, backbone="resnet18", min_size=64, max_size=96, fpn_channels=32, representation_size=64,
    mask_head_channels=32, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=64,
    rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=32, rpn_batch_size_per_image=64,
    box_batch_size_per_image=32, max_detections=10, seed=0,
)
KEYS = ("boxes", "scores", "classes", "masks", "num_detections")


def tiny(**overrides):
    return segzoo.get_model("mask_rcnn", **{**TINY, **overrides})


def batch(with_instances=True):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    boxes = np.zeros((2, 3, 4), np.float32)
    classes = np.zeros((2, 3), np.int32)
    masks = np.zeros((2, 3, 64, 64), np.uint8)
    if with_instances:
        boxes[0, 0], classes[0, 0] = [8, 10, 40, 30], 1
        masks[0, 0, 10:30, 8:40] = 1
        boxes[0, 1], classes[0, 1] = [30, 30, 60, 62], 3
        masks[0, 1, 30:62, 30:60] = 1
        boxes[1, 0], classes[1, 0] = [0, 0, 20, 20], 2
        masks[1, 0, :20, :20] = 1
    return images, {"boxes": boxes, "classes": classes, "masks": masks}


def losses_of(model, images, targets, training=True):
    fn = tf.function(lambda x, t: model.compute_losses(x, t, training=training))
    return {k: float(v) for k, v in fn(images, targets).items()}


def predict(model, images):
    return model(tf.constant(images), training=False)  # eager calls run one traced tf.function


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1234)
    return tiny()


def test_inference_contract_on_non_square_input(model):
    assert model.task == "instance" and model.class_names[0] == "class_0" and len(model.class_names) == 4
    assert model.category_ids == [1, 2, 3]
    image = np.random.default_rng(1).uniform(0, 255, (1, 50, 70, 3)).astype(np.float32)
    out = {k: v.numpy() for k, v in predict(model, image).items()}
    assert sorted(out) == sorted(KEYS)
    assert out["boxes"].shape == (1, 10, 4) and out["boxes"].dtype == np.float32
    assert out["scores"].shape == (1, 10) and out["scores"].dtype == np.float32
    assert out["classes"].shape == (1, 10) and out["classes"].dtype == np.int32
    assert out["masks"].shape == (1, 10, 50, 70) and out["masks"].dtype == np.uint8
    assert out["num_detections"].shape == (1,) and out["num_detections"].dtype == np.int32
    n = int(out["num_detections"][0])
    assert 0 < n <= 10  # untrained: ~uniform class scores, well above 0.05
    assert set(np.unique(out["masks"])) <= {0, 1}
    assert (np.diff(out["scores"][0, :n]) <= 0).all()
    assert set(out["classes"][0, :n]) <= {1, 2, 3}
    boxes = out["boxes"][0, :n]
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 70).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 50).all()
    # Padding slots are all zeros.
    assert not out["boxes"][0, n:].any() and not out["scores"][0, n:].any()
    assert not out["classes"][0, n:].any() and not out["masks"][0, n:].any()
    # Mask pixels lie inside their (one-pixel-expanded) boxes.
    for box, mask in zip(boxes, out["masks"][0, :n], strict=True):
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= np.floor(box[0]) - 1 and xs.max() <= np.ceil(box[2]) + 1
            assert ys.min() >= np.floor(box[1]) - 1 and ys.max() <= np.ceil(box[3]) + 1


def test_outputs_are_in_input_pixels(model):
    """A 2x-upsampled image gives the same network input (bilinear 2x down of a 2x nearest up
    is exact), so its boxes must be exactly twice as large."""
    small = np.random.default_rng(2).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    large = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)
    out_small, out_large = predict(model, small), predict(model, large)
    n = int(out_small["num_detections"][0])
    assert n > 0 and int(out_large["num_detections"][0]) == n
    np.testing.assert_allclose(out_large["boxes"].numpy(), 2 * out_small["boxes"].numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out_large["scores"].numpy(), out_small["scores"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(out_large["classes"].numpy(), out_small["classes"].numpy())
    assert out_large["masks"].shape == (1, 10, 128, 192)


def test_pinned_losses_of_seeded_tiny_model():
    model = tiny()
    images, targets = batch()
    values = losses_of(model, images, targets)
    # Pinned (regression test); sanity: untrained objectness ~ ln 2, 4-way class loss ~ ln 4.
    expected = {"rpn_objectness": 0.692254, "rpn_box": 0.130833, "box_class": 1.402184,
                "box_regression": 0.330769, "mask": 2.392843}
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-3, abs=1e-4), name


def test_image_without_instances_is_a_negative(model):
    images, targets = batch(with_instances=False)
    values = losses_of(model, images, targets)
    assert values["rpn_box"] == 0.0 and values["box_regression"] == 0.0 and values["mask"] == 0.0
    assert np.isfinite(values["rpn_objectness"]) and values["rpn_objectness"] > 0
    assert np.isfinite(values["box_class"]) and values["box_class"] > 0
    out = predict(model, np.zeros((1, 40, 40, 3), np.float32))
    assert out["masks"].shape == (1, 10, 40, 40)


def test_fit_steps_on_positive_and_negative_batches():
    model = tiny()
    positive, negative = batch(), batch(with_instances=False)
    data = tf.data.Dataset.from_tensors(positive).concatenate(tf.data.Dataset.from_tensors(negative))
    before = [w.numpy().copy() for w in model.roi_heads.box_predictor.weights]
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    history = model.fit(data, epochs=1, verbose=0)
    assert sorted(history.history) == sorted(
        ["loss", "rpn_objectness", "rpn_box", "box_class", "box_regression", "mask"])
    parts = sum(history.history[k][0] for k in ("rpn_objectness", "rpn_box", "box_class", "box_regression", "mask"))
    assert np.isfinite(history.history["loss"][0])
    assert history.history["loss"][0] == pytest.approx(parts, rel=1e-5)
    after = model.roi_heads.box_predictor.weights
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after, strict=True))


def test_keras_round_trip_safe_mode():
    model = tiny(class_names=["bg", "circle", "rectangle", "triangle"], category_ids=[3, 7, 9])
    image = np.random.default_rng(3).uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    loaded_out = check_model_round_trip(model, image, atol=1e-5, rtol=1e-5)
    assert int(loaded_out["num_detections"][0]) > 0
    clone = MaskRCNN.from_config(model.get_config())
    assert clone.class_names == ["bg", "circle", "rectangle", "triangle"] and clone.category_ids == [3, 7, 9]
    assert clone.get_config() == model.get_config()


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    {"roi_pooler": "warp"}, {"roi_pooler": "pool"}, {"mask_loss": "softmax"}, {"class_agnostic_masks": True},
])
def test_ablation_switches_train_and_infer(overrides):
    model = tiny(**overrides)
    images, targets = batch()
    values = losses_of(model, images, targets)
    assert all(np.isfinite(v) for v in values.values()) and values["mask"] > 0
    out = predict(model, images[:1])
    assert out["masks"].shape == (1, 10, 64, 64)


def test_fine_tuning_to_another_class_count_skips_only_class_dependent_layers():
    source = tiny()
    target = tiny(num_classes=5)
    report = load_weights_by_name(target, source, verbose=False)
    # The RoI heads differ in shape, so they are matched sublayer by sublayer: only the
    # class-dependent layers are skipped.
    assert sorted(report.skipped_mismatched) == [
        "roi_heads/box_predictor/bbox_pred", "roi_heads/box_predictor/cls_score",
        "roi_heads/mask_predictor/mask_fcn_logits"]
    for name in ("resnet18", "fpn", "rpn", "roi_heads/box_head", "roi_heads/mask_head"):
        assert name in report.loaded
    for a, b in zip(target.roi_heads.mask_head.weights, source.roi_heads.mask_head.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_trainable_layers_freeze_backbone_stages():
    heads = tiny(trainable_layers="heads")
    assert not heads.backbone.trainable_weights
    assert heads.rpn.trainable_weights
    partial = tiny(trainable_layers="4+")
    names = {w.path for w in partial.backbone.trainable_weights}
    assert names and not any("conv3_" in n or "conv2_" in n or "conv1_" in n for n in names)


@pytest.mark.slow
def test_mixed_precision():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = tiny()
        images, targets = batch()
        values = losses_of(model, images, targets)
        assert all(np.isfinite(v) for v in values.values())
        out = predict(model, images[:1])
        assert out["boxes"].dtype == tf.float32 and out["masks"].dtype == tf.uint8
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def test_invalid_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="backbone"):
        segzoo.get_model("mask_rcnn", num_classes=3, backbone="vgg16")
    with pytest.raises(ValueError, match="roi_pooler"):
        segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18", roi_pooler="crop")
    with pytest.raises(ValueError, match="class_agnostic"):
        segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18", mask_loss="softmax",
                         class_agnostic_masks=True)
    with pytest.raises(ValueError, match="category_ids"):
        segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18", category_ids=[1, 2])
    with pytest.raises(ValueError, match="rpn_nms_treshold.*did you mean rpn_nms_threshold"):
        segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18", rpn_nms_treshold=0.6)


@pytest.mark.slow
def test_inference_and_losses_compile_with_xla():
    model = tiny()
    images, targets = batch()
    assert model.supports_jit
    out = tf.function(lambda x: model(x, training=False), jit_compile=True)(tf.constant(images[:1]))
    assert out["masks"].shape == (1, 10, 64, 64)
    values = tf.function(lambda x, t: model.compute_losses(x, t), jit_compile=True)(images, targets)
    # Each call draws new samples, so compare with the untrained model's expected ranges.
    assert float(values["rpn_objectness"]) == pytest.approx(np.log(2.0), abs=0.01)
    assert float(values["box_class"]) == pytest.approx(np.log(4.0), abs=0.1)
    assert all(np.isfinite(float(v)) for v in values.values()) and float(values["mask"]) > 0
    # An image without instances compiles and runs too (NMS on all-invalid candidates).
    negative_images, negative = batch(with_instances=False)
    values = tf.function(lambda x, t: model.compute_losses(x, t), jit_compile=True)(negative_images, negative)
    assert float(values["mask"]) == 0.0


@pytest.mark.slow
def test_fit_with_jit_compile():
    model = tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True)
    history = model.fit(tf.data.Dataset.from_tensors(batch()), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_mask_head_runs_on_the_positives_only_with_unchanged_losses_and_gradients(monkeypatch):
    """Training runs the mask head on the positive RoIs alone (torchvision's way); the masked
    mask loss and its gradients equal those of the head run on every slot."""
    from segzoo.models.mask_rcnn import roi_heads

    model = tiny()
    images, targets = batch()
    state = model.seed_generator.state.numpy()
    rows = []
    original = roi_heads.RoIHeads._mask_branch

    def counting(self, features, rois, active=None):
        rows.append(None if active is None else int(tf.reduce_sum(tf.cast(active, tf.int32))))
        return original(self, features, rois, active)

    def mask_loss_and_gradients():
        model.seed_generator.state.assign(state)  # the same sampled RoIs every time
        with tf.GradientTape() as tape:
            loss = model.compute_losses(tf.constant(images), targets, training=True)["mask"]
        return float(loss), tape.gradient(loss, model.roi_heads.mask_head.trainable_weights)

    monkeypatch.setattr(roi_heads.RoIHeads, "_mask_branch", counting)
    loss, gradients = mask_loss_and_gradients()
    monkeypatch.setattr(roi_heads.RoIHeads, "_mask_branch",
                        lambda self, features, rois, active=None: original(self, features, rois))
    every_slot_loss, every_slot_gradients = mask_loss_and_gradients()
    assert rows[0] is not None and 0 < rows[0]
    assert loss == pytest.approx(every_slot_loss, rel=1e-6)
    for a, b in zip(gradients, every_slot_gradients, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-7)
