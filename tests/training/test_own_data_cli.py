"""`segzoo train / predict` on the user's own single-channel 16-bit TIFF folder, with defaults."""

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from segzoo.cli import main
from segzoo.models.base import load_checkpoint


def _tiff_folder(root, seed=0):
    """12-bit single-channel TIFF images of bright squares on a dim background; masks 0/1/2."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", 6), ("val", 2)):
        os.makedirs(root / split / "images")
        os.makedirs(root / split / "masks")
        for i in range(count):
            image = rng.normal(300, 20, (40, 40))
            mask = np.zeros((40, 40), np.uint8)
            y, x = rng.integers(2, 20, 2)
            image[y : y + 14, x : x + 14] += 2500
            mask[y : y + 14, x : x + 14] = 1
            mask[y + 5 : y + 8, x + 5 : x + 8] = 2  # a rare class
            tifffile.imwrite(root / split / "images" / f"{i}.tif",
                             np.clip(image, 0, 4095).astype(np.uint16))
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")


def test_single_channel_tiffs_train_a_one_channel_unet_with_data_defaults(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    _tiff_folder(data)
    assert main(["train", "unet", "--data", "folder", "--data-dir", str(data), "--epochs", "1",
                 "--model-arg", "base_filters=4", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "input_channels=1" in out and "data scan of 6 training images" in out
    model = load_checkpoint(str(run / "model.keras"))
    assert model.input_channels == 1
    metrics = json.loads((run / "metrics.json").read_text())
    scan = metrics["data_scan"]
    assert scan["median_size"] == [40, 40] and len(scan["class_frequencies"]) == 3
    assert scan["chosen"]["image_size"] == 32 and scan["chosen"]["loss"] == "ce+dice"
    assert scan["chosen"]["batch_size"] == 1  # 6 images: at least 4 steps an epoch
    assert "class_weights" in scan["chosen"]  # the 9-pixel class is rare
    assert metrics["recipe"]["loss"] == "ce+dice" and metrics["recipe"]["image_size"] == 32
    assert any("input_channels=1" in note for note in metrics["defaults"])
    predictions = tmp_path / "predictions"
    image = data / "val" / "images" / "0.tif"
    assert main(["predict", "--checkpoint", str(run / "model.keras"), str(image),
                 "--out", str(predictions)]) == 0
    labels = np.asarray(Image.open(predictions / "0.png"))
    assert labels.shape == (40, 40)


@pytest.mark.slow
def test_users_coco_format_export_trains_evaluates_and_predicts(tmp_path, capsys):
    """The issue's command on a CVAT-style export (train/val, ids 3/7/12, polygons + RLE,
    negatives), without --train-split / --val-split / backbone_weights / min_size."""
    from tests.data.coco_tree import make_coco_tree

    data, run = tmp_path / "mydata", tmp_path / "run"
    make_coco_tree(data, 8, 4, size=64)
    assert main(["train", "mask_rcnn", "--data", "coco", "--data-dir", str(data),
                 "--model-arg", "backbone=resnet18", "--image-size", "64", "--epochs", "1",
                 "--batch-size", "4", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "random initialisation" in out and "(recipe instance)" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backbone_init"]["used"] is None
    assert metrics["recipe"]["model_args"]["min_size"] == 64
    assert metrics["recipe"]["model_args"]["max_size"] == round(64 * 1333 / 800)
    model = load_checkpoint(str(run / "model.keras"))
    assert model.training_input_spec.min_size == 64
    assert list(model.category_ids) == [3, 7, 12]
    assert main(["eval", "--checkpoint", str(run / "model.keras"), "--data", "coco",
                 "--data-dir", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_images"] == 4 and "mask_ap50" in result
    predictions = tmp_path / "predictions"
    assert main(["predict", "--checkpoint", str(run / "model.keras"),
                 str(data / "val" / "val_0000.jpg"), "--out", str(predictions),
                 "--score-threshold", "0"]) == 0
    detections = json.loads((predictions / "val_0000.json").read_text())["detections"]
    assert all(d["class_id"] in (3, 7, 12) for d in detections)
