"""`segzoo train / eval / predict` end to end on a tiny model (in-process CLI calls)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import segzoo.data
from segzoo.cli import main
from segzoo.commands.predict import instance_id_map
from segzoo.evaluation.semantic import ConfusionMatrix
from segzoo.models.base import load_checkpoint
from tests.training import tiny_model  # noqa: F401  (registers "tiny_segmenter")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    code = main(["train", "tiny_segmenter", "--epochs", "1", "--steps-per-epoch", "3",
                 "--batch-size", "2", "--image-size", "32", "--learning-rate", "0.01",
                 "--out", str(run), "--model-arg", "width=6"])
    assert code == 0
    return str(run / "model.keras")


def test_train_writes_a_checkpoint_with_model_args(checkpoint):
    model = load_checkpoint(checkpoint)
    assert model.width == 6 and model.class_names[1] == "circle"


def test_eval_json_equals_independent_confusion_matrix(checkpoint, capsys):
    capsys.readouterr()
    assert main(["eval", "--checkpoint", checkpoint, "--max-images", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) == {"pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou", "per_class_iou"}
    # Reference: the model on each image at its original size, one confusion matrix.
    model = load_checkpoint(checkpoint)
    cm = ConfusionMatrix(4)
    for element in segzoo.data.load("shapes", "val").take(5).as_numpy_iterator():
        logits = model.predict(element["image"][None].astype(np.float32), verbose=0)[0]
        assert logits.shape[:2] == element["mask"].shape
        cm.update(element["mask"], logits.argmax(-1))
    want = cm.metrics()
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert result[key] == pytest.approx(want[key], rel=1e-6)


def test_eval_table_names_classes(checkpoint, capsys):
    capsys.readouterr()
    assert main(["eval", "--checkpoint", checkpoint, "--max-images", "2"]) == 0
    out = capsys.readouterr().out
    for name in ("background", "circle", "rectangle", "triangle", "mean IoU"):
        assert name in out


def test_predict_writes_class_png_at_input_size_and_overlay(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, (h, w) in {"a": (40, 56), "b": (33, 47)}.items():
        path = tmp_path / f"{name}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", checkpoint, *paths, "--out", str(out)]) == 0
    model = load_checkpoint(checkpoint)
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        image = np.asarray(Image.open(path).convert("RGB"))
        labels = np.asarray(Image.open(out / f"{name}.png"))
        assert labels.shape == image.shape[:2]
        want = model.predict(image[None].astype(np.float32), verbose=0)[0].argmax(-1)
        np.testing.assert_array_equal(labels, want)
        overlay = Image.open(out / f"{name}_overlay.png")
        assert overlay.size == (image.shape[1], image.shape[0]) and overlay.mode == "RGB"


def test_user_errors_exit_2_with_a_message(checkpoint, tmp_path, capsys):
    assert main(["predict", "--checkpoint", checkpoint, str(tmp_path / "missing.png"),
                 "--out", str(tmp_path)]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["train", "unet_typo", "--out", str(tmp_path)]) == 2
    assert "unet" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "nope.keras")]) == 2


def test_instance_id_map_higher_score_wins():
    masks = np.zeros((3, 4, 4), np.uint8)
    masks[0, :2, :2] = 1
    masks[1, 1:3, 1:3] = 1
    masks[2, 3, 3] = 1
    ids = instance_id_map(masks, np.array([0.5, 0.9, 0.1]), (4, 4))
    assert ids[1, 1] == 2  # overlap of detections 1 (0.5) and 2 (0.9): the 0.9 one
    assert ids[0, 0] == 1 and ids[3, 3] == 3 and ids[0, 3] == 0


@pytest.mark.slow
def test_demo_trains_evaluates_predicts_and_says_where(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "1"]) == 0
    printed = capsys.readouterr().out
    assert "mean IoU" in printed and str(out) in printed
    assert (out / "run" / "model.keras").exists() and (out / "eval.json").exists()
    predictions = sorted(os.listdir(out / "predictions"))
    assert len(predictions) == 12 and predictions[1].endswith("_overlay.png")
    # The export, and one image segmented with it by a process without segzoo.
    assert (out / "export" / "saved_model.pb").exists()
    served = os.listdir(out / "served")
    assert len(served) == 1 and served[0] in predictions
    assert str(out / "export") in printed and str(out / "served" / served[0]) in printed
    agreement = float(printed.split("% of pixels equal")[0].rsplit(";", 1)[-1])
    assert agreement >= 99.0
