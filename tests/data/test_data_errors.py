"""Errors in the user's data found while tf.data runs reach the user as one line, exit 2."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from segzoo.cli import main
from segzoo.data import load
from segzoo.data.errors import mark, user_error_message
from tests.training import tiny_model  # noqa: F401  (registers "tiny_segmenter")


def _folder(root, bad_train_mask=None, count=6):
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("val", 2)):
        os.makedirs(root / split / "images")
        os.makedirs(root / split / "masks")
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
                root / split / "images" / f"{i}.png")
            mask = rng.integers(0, 3, (24, 24)).astype(np.uint8)
            if split == "train" and i == bad_train_mask:
                mask[3, 4] = 9
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    (root / "classes.txt").write_text("a\nb\nc\n")


def test_message_found_in_wrapped_errors():
    inner = ValueError(mark("Label file 'x.png' contains class ids [9]"))
    wrapped = tf.errors.InvalidArgumentError(None, None, f"Error in map: {inner}\nTraceback ...")
    assert user_error_message(wrapped) == "Label file 'x.png' contains class ids [9]"
    try:
        try:
            raise inner
        except ValueError as e:
            raise RuntimeError("keras wrapper") from e
    except RuntimeError as outer:
        assert user_error_message(outer) == "Label file 'x.png' contains class ids [9]"
    assert user_error_message(ValueError("plain")) == "plain"
    assert user_error_message(RuntimeError("a bug")) is None


def test_bad_mask_in_the_iterator_names_the_file(tmp_path):
    _folder(tmp_path, bad_train_mask=4)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(load("folder", "train", tmp_path))
    message = user_error_message(error.value)
    assert message.startswith("Label file ") and "masks/4.png" in message
    assert "class ids [9]" in message and "\n" not in message


def test_train_stops_mid_epoch_with_one_line_and_keeps_what_was_written(tmp_path, capsys):
    data = tmp_path / "data"
    _folder(data, bad_train_mask=5, count=8)
    run = tmp_path / "run"
    code = main(["train", "tiny_segmenter", "--data", "folder", "--data-dir", str(data),
                 "--epochs", "1", "--batch-size", "2", "--image-size", "16", "--out", str(run)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segzoo train: error: Label file ") and "5.png" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_predict_decompression_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    _folder(data)
    run = tmp_path / "run"
    assert main(["train", "tiny_segmenter", "--data", "folder", "--data-dir", str(data),
                 "--epochs", "1", "--batch-size", "2", "--image-size", "16",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code = main(["predict", "--checkpoint", str(run / "model.keras"), str(tmp_path / "huge.png"),
                 "--out", str(tmp_path / "out")])
    assert code != 0  # predict reports each failed image and goes on (exit 1 when some failed)
    captured = capsys.readouterr()
    text = captured.err + captured.out
    (line,) = [line for line in text.splitlines() if "Cannot decode image" in line]
    assert "huge.png" in line and "2000 pixels" in line and "Traceback" not in text
