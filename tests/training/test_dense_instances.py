"""No instance cap in training (issue #8): a dense image (microscopy: hundreds of nuclei) trains
on every instance, each batch padding its instance rows to its own largest count."""

import numpy as np
import tensorflow as tf

import segzoo
from segzoo.data.pipeline import instance_train_pipeline

TINY = dict(num_classes=1, backbone="resnet18", min_size=96, max_size=96, fpn_channels=16,
            representation_size=32, mask_head_channels=16, rpn_pre_nms_top_n_train=200,
            rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
            box_batch_size_per_image=64, max_detections=5)


def _grid_element(count, size=96, cell=6):
    """`count` 4 x 4 squares on a grid of `cell` px (up to (size / cell)^2 = 256 of them)."""
    per_row = size // cell
    masks = np.zeros((count, size, size), np.uint8)
    boxes = np.zeros((count, 4), np.float32)
    for i in range(count):
        y, x = (i // per_row) * cell + 1, (i % per_row) * cell + 1
        masks[i, y:y + 4, x:x + 4] = 1
        boxes[i] = [x, y, x + 4, y + 4]
    image = np.full((size, size, 3), 30, np.uint8)
    image[masks.any(0) if count else np.zeros((size, size), bool)] = 220
    return {"image": image, "boxes": boxes, "classes": np.ones(count, np.int32), "masks": masks,
            "is_crowd": np.zeros(count, bool), "image_id": np.int64(count)}


def _dataset(counts):
    elements = [_grid_element(n) for n in counts]
    signature = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
                 "boxes": tf.TensorSpec([None, 4], tf.float32),
                 "classes": tf.TensorSpec([None], tf.int32),
                 "masks": tf.TensorSpec([None, None, None], tf.uint8),
                 "is_crowd": tf.TensorSpec([None], tf.bool), "image_id": tf.TensorSpec([], tf.int64)}
    return tf.data.Dataset.from_generator(lambda: iter(elements), output_signature=signature)


def test_every_instance_is_kept_and_rows_follow_the_batch():
    counts = [0, 5, 150]
    pipe = instance_train_pipeline(_dataset(counts), 96, 3, max_size=96, flip=False,
                                   shuffle_buffer=0, mask_crop_size=28)
    images, targets = next(iter(pipe))
    assert images.shape == (3, 96, 96, 3)
    assert targets["classes"].shape == (3, 150) and targets["mask_crops"].shape == (3, 150, 28, 28)
    np.testing.assert_array_equal((targets["classes"].numpy() > 0).sum(1), counts)
    np.testing.assert_allclose(targets["boxes"].numpy()[2, 149], [31, 55, 35, 59])  # grid row 9, column 5
    # A batch of empty images still has one (padding) row; a cap keeps the first M.
    empty = next(iter(instance_train_pipeline(_dataset([0, 0]), 96, 2, max_size=96,
                                              shuffle_buffer=0)))[1]
    assert empty["classes"].shape == (2, 1) and not empty["classes"].numpy().any()
    capped = next(iter(instance_train_pipeline(_dataset([150]), 96, 1, max_size=96, flip=False,
                                               shuffle_buffer=0, max_instances=100)))[1]
    assert capped["classes"].shape == (1, 100) and (capped["classes"].numpy() == 1).all()


def test_training_steps_with_different_instance_counts():
    """One compiled train function takes batches of 1 and of 200 instance rows."""
    model = segzoo.get_model("mask_rcnn", seed=0, **TINY)
    model.compile(optimizer=tf.keras.optimizers.SGD(0.001))
    pipe = instance_train_pipeline(_dataset([1, 0, 200, 3]), 96, 2, max_size=96, flip=False,
                                   shuffle_buffer=0, mask_crop_size=28)
    rows = [int(t["classes"].shape[1]) for _, t in pipe]
    assert rows == [1, 200]
    history = model.fit(pipe, epochs=1, verbose=0).history
    assert all(np.isfinite(history[k][0]) for k in ("loss", "box_class", "mask"))
    assert history["mask"][0] > 0  # both batches have positives
