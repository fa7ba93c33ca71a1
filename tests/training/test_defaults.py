"""Recipe defaults that follow the model and the data (segzoo.training.defaults)."""

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
        **only_max.model_args, "min_size": 128, "max_size": 300}


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
    assert found is recipe and record is None


def test_real_lookup_for_resnet18_is_unavailable():
    with pytest.raises(ValueError, match="received depth 18"):
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


def test_parse_image_size():
    assert defaults.parse_image_size("128") == 128
    assert defaults.parse_image_size("96,112,128") == (96, 112, 128)
    for bad in ("", "a", "0", "12.5", "96,,x"):
        with pytest.raises(ValueError, match="--image-size"):
            defaults.parse_image_size(bad)
