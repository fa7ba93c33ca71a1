"""Recipe defaults that follow the model and the data (segzoo.training.defaults)."""

import numpy as np
import pytest

from segzoo.training import defaults
from segzoo.training.recipes import apply_overrides, default_recipe_name, get_recipe


def test_coco_release_recipe_only_for_release_splits():
    assert default_recipe_name("mask_rcnn", "coco", "instance") == "coco_mask_rcnn"
    assert default_recipe_name("mask_rcnn", "coco", "instance",
                               ("train2017", "val2017")) == "coco_mask_rcnn"
    assert default_recipe_name("mask_rcnn", "coco", "instance", ("train", "val")) == "instance"


def test_choose_splits_from_the_data():
    recipe = get_recipe("coco_mask_rcnn")
    chosen, notes = defaults.choose_splits(recipe, ("train", "val"))
    assert (chosen.train_split, chosen.val_split) == ("train", "val") and notes
    user = apply_overrides(recipe, train_split="mine")
    assert defaults.choose_splits(user, ("train", "val"))[0].train_split == "mine"
    no_val, notes = defaults.choose_splits(get_recipe("instance"), ("train",))
    assert no_val.val_split is None and "without validation" in notes[0]
    same, notes = defaults.choose_splits(get_recipe("instance"), ("train", "val"))
    assert same == get_recipe("instance") and notes == []


def test_image_size_sets_min_and_max_size():
    recipe = apply_overrides(get_recipe("instance"), image_size=128)
    args = defaults.instance_scale(recipe).model_args
    assert args["min_size"] == 128 and args["max_size"] == round(128 * 1333 / 800)
    multi = apply_overrides(get_recipe("instance"), image_size=(96, 112, 128))
    assert defaults.instance_scale(multi).model_args["min_size"] == 128
    # the shapes recipe states its own ratio (1:1): kept at another size
    shapes = apply_overrides(get_recipe("shapes_mask_rcnn"), image_size=96)
    args = defaults.instance_scale(shapes).model_args
    assert (args["min_size"], args["max_size"]) == (96, 96)
    explicit = apply_overrides(get_recipe("instance"), image_size=128,
                               model_args={"min_size": 200})
    assert defaults.instance_scale(explicit).model_args["min_size"] == 200
    only_max = apply_overrides(get_recipe("instance"), image_size=128,
                               model_args={"max_size": 300})
    assert defaults.instance_scale(only_max).model_args == {
        **only_max.model_args, "min_size": 128, "max_size": 300, "box_batch_size_per_image": 128}


def test_rois_per_image_follow_the_image_area():
    assert [defaults.rois_per_image(s) for s in (128, 256, 512, 640, 800, 1024)] == [
        128, 128, 224, 320, 512, 512]
    coco = defaults.instance_scale(get_recipe("coco_mask_rcnn")).model_args
    assert coco["box_batch_size_per_image"] == 512  # the paper's, at 800 px
    small = defaults.instance_scale(apply_overrides(get_recipe("instance"), image_size=128))
    assert small.model_args["box_batch_size_per_image"] == 128
    # A recipe's own value (the narrow shapes heads) and the user's stay.
    shapes = defaults.instance_scale(apply_overrides(get_recipe("shapes_mask_rcnn"), image_size=512))
    assert shapes.model_args["box_batch_size_per_image"] == 128
    user = apply_overrides(get_recipe("instance"), image_size=128,
                           model_args={"box_batch_size_per_image": 512})
    assert defaults.instance_scale(user).model_args["box_batch_size_per_image"] == 512


def _unavailable(model_name, model_args):
    raise ValueError("weights='imagenet' is available for ResNet-[50, 101, 152]; received depth 18")


def test_recipe_imagenet_falls_back_to_random_init_but_the_users_does_not():
    recipe = apply_overrides(get_recipe("instance"), model_args={"backbone": "resnet18"})
    fallen, record = defaults.pretrained_fallback(recipe, "mask_rcnn", find=_unavailable)
    assert fallen.model_args["backbone_weights"] is None
    assert record["used"] is None and "received depth 18" in record["reason"]
    assert "random initialisation" in record["reason"]
    asked = apply_overrides(recipe, model_args={"backbone_weights": "imagenet"})
    kept, record = defaults.pretrained_fallback(asked, "mask_rcnn", find=_unavailable)
    assert kept.model_args["backbone_weights"] == "imagenet" and record is None
    found, record = defaults.pretrained_fallback(recipe, "mask_rcnn", find=lambda *a: "/x.h5")
    # ResNet-18's only ImageNet weights are torchvision's: the recipe builds that layout
    assert found.model_args == {**recipe.model_args, "backbone_layout": "torchvision"} and record is None


def test_real_lookup_for_resnet18_keras_layout_is_unavailable():
    with pytest.raises(ValueError, match="layout='torchvision'"):
        defaults.imagenet_weights_file("mask_rcnn", {"backbone": "resnet18"})


def test_schedule_scaled_to_data_and_batch():
    recipe = apply_overrides(get_recipe("instance"), batch_size=4)
    scaled, notes = defaults.scale_schedule(recipe, steps_per_epoch=100)  # 400 images
    assert scaled.learning_rate == pytest.approx(0.02 * 4 / 16)
    assert scaled.epochs == 12 and scaled.warmup_steps == 60  # 5% of 1200 steps
    small, _ = defaults.scale_schedule(recipe, steps_per_epoch=10)  # 40 images
    assert small.epochs == 100 and small.warmup_steps == 50
    user = apply_overrides(recipe, epochs=3, learning_rate=0.1)
    kept, _ = defaults.scale_schedule(user, steps_per_epoch=10)
    assert kept.epochs == 3 and kept.learning_rate == 0.1 and kept.warmup_steps == 2
    assert notes and all(isinstance(n, str) for n in notes)


def test_parse_image_size_and_scale_jitter():
    from segzoo.commands.size_args import parse_image_size, parse_scale_jitter

    assert parse_image_size("128") == 128
    assert parse_image_size("96,112,128") == (96, 112, 128)
    for bad in ("", "a", "0", "12.5", "96,,x"):
        with pytest.raises(ValueError, match="--image-size"):
            parse_image_size(bad)
    assert parse_scale_jitter("0.1,2.0") == (0.1, 2.0)
    for bad in ("2,1", "0.5", "a,b", "0,1"):
        with pytest.raises(ValueError, match="--scale-jitter"):
            parse_scale_jitter(bad)


def test_scan_picks_crop_batch_loss_and_weights():
    rng = np.random.default_rng(0)
    elements = []
    for _ in range(5):
        mask = np.zeros((100, 140), np.uint8)
        mask[:4, :4] = 2  # a rare class
        mask[50:, :] = 1
        mask[-1] = 255
        elements.append({"image": rng.integers(10, 200, (100, 140, 3)).astype(np.uint8),
                         "mask": mask})
    scan = defaults.scan_semantic(iter(elements), num_classes=3)
    assert scan["images_scanned"] == 5 and scan["median_size"] == [100, 140]
    valid = 100 * 140 - 140
    assert scan["class_frequencies"][2] == pytest.approx(16 / valid, abs=1e-5)
    assert 10 <= scan["intensity_range"][0] and scan["intensity_range"][1] <= 200
    recipe, record = defaults.semantic_data_defaults(get_recipe("semantic"), scan)
    assert recipe.image_size == 96 and recipe.batch_size == 7 and recipe.loss == "ce+dice"
    weights = recipe.class_weights
    assert weights[2] == 4.0 and weights[0] < weights[2]  # the rare class weighs most
    assert record["chosen"]["image_size"] == 96 and "describe" not in record
    assert "class frequencies" in defaults.describe_scan(record)
    user = apply_overrides(get_recipe("semantic"), image_size=64, batch_size=3, loss="ce")
    kept, record = defaults.semantic_data_defaults(user, scan)
    assert (kept.image_size, kept.batch_size, kept.loss, kept.class_weights) == (64, 3, "ce", None)
    assert defaults.class_weights_of([0.5, 0.3, 0.2]) is None  # balanced enough


def test_unet_input_channels_follow_single_channel_data():
    recipe = get_recipe("semantic")
    gray, notes = defaults.input_channels(recipe, "unet", 1)
    assert gray.model_args["input_channels"] == 1 and notes
    assert defaults.input_channels(recipe, "unet", 3)[0] is recipe
    assert defaults.input_channels(recipe, "fcn8s", 1)[0] is recipe  # no such argument
    user = apply_overrides(recipe, model_args={"input_channels": 3})
    assert defaults.input_channels(user, "unet", 1)[0].model_args["input_channels"] == 3


def test_resolve_recipe_for_a_coco_format_export(tmp_path):
    from segzoo.training.fit import resolve_recipe
    from tests.data.coco_tree import make_coco_tree

    make_coco_tree(tmp_path, 2, 1, size=32)
    recipe, _ = resolve_recipe({"model": "mask_rcnn", "data": "coco", "data_dir": str(tmp_path),
                                "image_size": 128, "model_arg": [("backbone", "resnet18")]})
    assert recipe.name == "instance" and recipe.train_split == "train"
    assert "image_size" in recipe.user_fields and "model_args.backbone" in recipe.user_fields
    release = tmp_path / "release"
    make_coco_tree(release, 2, 1, size=32, release=True)
    recipe, _ = resolve_recipe({"model": "mask_rcnn", "data": "coco", "data_dir": str(release)})
    assert recipe.name == "coco_mask_rcnn"
    from segzoo.training.task_data import task_data_args

    assert task_data_args("labelme", "instance", {}) == {"task": "instance"}
    assert task_data_args("coco", "instance", {}) == {}


def test_instance_short_side_from_the_data():
    elements = [{"image": np.zeros((h, w, 3), np.uint8)} for h, w in
                [(130, 200), (140, 100), (150, 160)]]
    recipe, record = defaults.instance_data_defaults(get_recipe("instance"), iter(elements))
    assert record["median_short_side"] == 130 and recipe.image_size == 128
    big = [{"image": np.zeros((2000, 3000, 3), np.uint8)}]
    assert defaults.instance_data_defaults(get_recipe("instance"), iter(big))[0].image_size == 800
    user = apply_overrides(get_recipe("instance"), image_size=256)
    assert defaults.instance_data_defaults(user, iter(elements))[0].image_size == 256


def test_dense_data_raises_the_detection_budget():
    """Up to 50 instances an image keeps COCO's 100 detections; 180 nuclei give 400."""
    def element(count):
        return {"image": np.zeros((256, 256, 3), np.uint8), "classes": np.ones(count, np.int32)}

    sparse, record = defaults.instance_data_defaults(get_recipe("instance"), iter([element(3),
                                                                                  element(50)]))
    assert "max_detections" not in sparse.model_args and record["max_instances_per_image"] == 50
    dense, record = defaults.instance_data_defaults(get_recipe("instance"),
                                                    iter([element(0), element(180)]))
    assert dense.model_args["max_detections"] == 400 and record["chosen"]["max_detections"] == 400
    assert dense.model_args["backbone_weights"] == "imagenet"  # the recipe's other arguments stay
    user = apply_overrides(get_recipe("instance"), model_args={"max_detections": 150})
    assert defaults.instance_data_defaults(user, iter([element(180)]))[0].model_args[
        "max_detections"] == 150


def test_small_objects_get_smaller_anchors():
    """Nuclei of ~12 px at the training scale: anchors from 16 px; 41 px objects keep the paper's."""
    def element(side, count=20, short=256):
        boxes = np.tile([[10.0, 10.0, 10.0 + side, 10.0 + side]], (count, 1))
        return {"image": np.zeros((short, short, 3), np.uint8), "boxes": boxes,
                "classes": np.ones(count, np.int32)}

    small, record = defaults.instance_data_defaults(get_recipe("instance"), iter([element(12)] * 3))
    assert record["median_object_size"] == 12.0
    assert small.model_args["anchor_sizes"] == [16, 32, 64, 128, 256]
    # Measured at the training scale: 12 px boxes in 512 px images trained at 256 px are 6 px.
    half = apply_overrides(get_recipe("instance"), image_size=256)
    tiny, record = defaults.instance_data_defaults(half, iter([element(12, short=512)]))
    assert record["median_object_size"] == 6.0 and tiny.model_args["anchor_sizes"][0] == 8
    usual, _ = defaults.instance_data_defaults(get_recipe("instance"), iter([element(41)]))
    assert "anchor_sizes" not in usual.model_args
    user = apply_overrides(get_recipe("instance"), model_args={"anchor_sizes": (32, 64, 128, 256, 512)})
    assert defaults.instance_data_defaults(user, iter([element(12)]))[0].model_args[
        "anchor_sizes"] == (32, 64, 128, 256, 512)
