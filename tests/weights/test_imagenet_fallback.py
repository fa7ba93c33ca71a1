"""A recipe's ImageNet ResNet-18/34 backbone: torchvision's converted file, or one line saying where it goes."""

import json
import os

import numpy as np
import pytest

import segzoo
from segzoo.training import defaults
from segzoo.training.recipes import apply_overrides, get_recipe
from segzoo.weights import catalogue
from segzoo.weights.convert import convert_resnet
from tests.weights import synthetic


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEGZOO_OFFLINE", "1")
    return tmp_path / "home"


def _resnet18_recipe(**model_args):
    return apply_overrides(get_recipe("instance"), model_args={"backbone": "resnet18", **model_args})


def test_absent_resnet18_weights_name_the_file_and_where_to_put_it(offline_home):
    recipe = _resnet18_recipe()
    assert recipe.model_args["backbone_weights"] == "imagenet"  # the recipe asks, not the user
    fallen, record = defaults.pretrained_fallback(recipe, "mask_rcnn")
    assert fallen.model_args["backbone_weights"] is None
    assert fallen.model_args["backbone_layout"] == "torchvision"  # the layout of the only ImageNet R18 file
    reason = record["reason"]
    assert "\n" not in reason and record["used"] is None
    assert "resnet18-f37072fd.pth" in reason and str(offline_home / "downloads") in reason
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in reason
    assert "give a copy you have to `segzoo weights get resnet18_imagenet` (its file option)" in reason
    assert reason.endswith("training starts from random initialisation")
    assert "layout=" not in reason  # no more "build the backbone with layout='torchvision'"


def test_users_layout_and_weights_are_kept(offline_home):
    keras_layout = _resnet18_recipe(backbone_layout="keras")
    fallen, record = defaults.pretrained_fallback(keras_layout, "mask_rcnn")
    assert fallen.model_args["backbone_layout"] == "keras" and "layout='torchvision'" in record["reason"]
    resnet50 = apply_overrides(get_recipe("instance"), model_args={"backbone": "resnet50"})
    assert "backbone_layout" not in defaults.imagenet_layout(resnet50, "mask_rcnn").model_args
    explicit = _resnet18_recipe(backbone_weights="imagenet")
    assert defaults.pretrained_fallback(explicit, "mask_rcnn") == (explicit, None)


def test_converted_resnet18_in_segzoo_home_is_loaded(offline_home):
    state = synthetic.resnet_state_dict(18)
    path = catalogue.converted_path("resnet18_imagenet")
    os.makedirs(os.path.dirname(path))
    convert_resnet("resnet18", state, out=path, verbose=False)
    recipe, record = defaults.pretrained_fallback(_resnet18_recipe(), "mask_rcnn")
    assert record is None
    assert recipe.model_args["backbone_weights"] == "imagenet"
    assert recipe.model_args["backbone_layout"] == "torchvision"
    model = segzoo.get_model("mask_rcnn", num_classes=3, **{**recipe.model_args, "min_size": 64,
                                                            "max_size": 96})
    kernels = {w.path: w.numpy() for w in model.weights if w.path.endswith("kernel")}
    conv1 = [v for k, v in kernels.items() if "conv1" in k and v.shape == (7, 7, 3, 64)]
    assert len(conv1) == 1
    np.testing.assert_array_equal(conv1[0], np.transpose(state["conv1.weight"], (2, 3, 1, 0)))


@pytest.mark.slow  # a Mask R-CNN R18 epoch on 8 images: ~1-3 min on 2 cores
def test_issue_command_prints_the_line_and_records_it(offline_home, tmp_path, capsys):
    from segzoo.cli import main
    from tests.data.coco_tree import make_coco_tree

    data, run = tmp_path / "mydata", tmp_path / "run"
    make_coco_tree(data, 8, 4, size=64)
    assert main(["train", "mask_rcnn", "--data", "coco", "--data-dir", str(data),
                 "--model-arg", "backbone=resnet18", "--image-size", "64", "--epochs", "1",
                 "--batch-size", "4", "--out", str(run)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "random initialisation" in line]
    assert len(lines) == 1 and "resnet18-f37072fd.pth" in lines[0]
    assert "`segzoo weights get resnet18_imagenet` (its file option)" in lines[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backbone_init"]["used"] is None
    assert "resnet18-f37072fd.pth" in metrics["backbone_init"]["reason"]
    assert metrics["recipe"]["model_args"]["backbone_layout"] == "torchvision"
