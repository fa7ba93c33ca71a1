"""End of training: the evaluation figures of the best checkpoint land in TensorBoard."""

from __future__ import annotations

import glob
import os

import numpy as np
import tensorflow as tf

from segzoo.evaluation.loops import semantic_confusion
from segzoo.evaluation.semantic import ConfusionMatrix
from segzoo.training.fit import train
from tests.training import tiny_model  # registers "tiny_segmenter"


def _images_in_events(directory):
    images = {}
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                encoded = tf.make_ndarray(value.tensor)  # [width, height, PNG bytes...]
                images[value.tag] = (int(encoded[0]), int(encoded[1]), event.step,
                                     tf.io.decode_png(encoded[2]).numpy())
    return images


def test_training_ends_with_confusion_matrix_and_iou_bars_in_tensorboard(tmp_path):
    run = tmp_path / "run"
    train({"model": "tiny_segmenter", "recipe": tiny_model.tiny_recipe(epochs=2), "out": str(run),
           "verbose": 0})
    images = _images_in_events(str(run / "tensorboard" / "plots"))
    assert set(images) == {"confusion_matrix", "per_class_iou"}
    for width, height, step, pixels in images.values():
        assert width > 300 and height > 200 and step == 2
        assert pixels.shape == (height, width, 3) and pixels.std() > 10  # a picture, not blank


def test_semantic_confusion_equals_an_independent_matrix():
    import segzoo.data
    from tests.export.tiny_models import TinySegmenter

    model = TinySegmenter(num_classes=4, width=4)
    elements = list(segzoo.data.load("shapes", "val").take(3).as_numpy_iterator())
    cm, count = semantic_confusion(model, iter(elements))
    want = ConfusionMatrix(4)
    for element in elements:
        want.update(element["mask"], model(element["image"][None].astype(np.float32))[0].numpy().argmax(-1))
    assert count == 3
    np.testing.assert_array_equal(cm.hist, want.hist)
