"""A tiny semantic model following the segzoo model contract, for the export tests.

It stands in for FCN / U-Net where their size would slow the default tier:
a functional `keras.Model` subclass with `task = "semantic"`, `class_names`,
every constructor argument in `get_config()`, registered serialisable.
"""

from __future__ import annotations

import keras

from segzoo.models.base import SegmentationModel, resolve_class_names

# Registered under names of their own: tests/training/tiny_model.py has another TinySegmenter.
REGISTERED_NAMES = {"TinySegmenter": "segzoo_tests>ExportTinySegmenter",
                    "TinyDetector": "segzoo_tests>ExportTinyDetector"}


@keras.saving.register_keras_serializable(package="segzoo_tests", name="ExportTinySegmenter")
class TinySegmenter(SegmentationModel, keras.Model):
    task = "semantic"

    def __init__(self, num_classes=3, class_names=None, width=4, **kwargs):
        # === Functional Model ===
        images = keras.Input((None, None, 3), name="images")
        x = keras.layers.Rescaling(1.0 / 255.0)(images)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        logits = keras.layers.Conv2D(num_classes, 1)(x)
        super().__init__(images, logits, **kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.width = width
        self.class_names = resolve_class_names(class_names, num_classes)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                "class_names": self.class_names, "width": self.width}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="segzoo_tests", name="ExportTinyDetector")
class TinyDetector(SegmentationModel, keras.Model):
    """A stand-in instance model with Mask R-CNN's inference contract.

    `call(images float32 [B, H, W, 3])` -> {"boxes" [B, N, 4] xyxy pixels,
    "scores" [B, N] (descending), "classes" int32 [B, N] (1..K, 0 = padding),
    "masks" uint8 [B, N, H, W], "num_detections" int32 [B]}: N - 1 detections
    and one padding row; boxes are fixed fractions of the image, masks the
    bright red pixels inside each box, scores a learned function of the colour.
    """

    task = "instance"

    def __init__(self, num_classes=3, class_names=None, category_ids=None, max_detections=4,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.class_names = resolve_class_names(class_names, num_classes + 1)
        self.category_ids = list(category_ids or range(1, num_classes + 1))
        self.max_detections = max_detections
        self.score = keras.layers.Dense(max_detections, name="score")

    def call(self, images, training=False):
        import tensorflow as tf

        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        n = self.max_detections
        scores = tf.sort(tf.sigmoid(self.score(tf.reduce_mean(images, [1, 2]) / 255.0)),
                         direction="DESCENDING")
        valid = tf.range(n) < n - 1  # the last row is padding
        fractions = tf.constant([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 1.0, 1.0],
                                 [0.1, 0.5, 0.6, 0.9], [0.0, 0.0, 1.0, 1.0]] * n)[:n]
        boxes = fractions * tf.stack([w, h, w, h])
        boxes = tf.where(valid[:, None], boxes, 0.0)
        classes = tf.where(valid, tf.range(n) % self.num_classes + 1, 0)
        ys = tf.range(h)[None, :, None] + 0.5
        xs = tf.range(w)[None, None, :] + 0.5
        inside = ((xs >= boxes[:, 0, None, None]) & (xs < boxes[:, 2, None, None])
                  & (ys >= boxes[:, 1, None, None]) & (ys < boxes[:, 3, None, None]))  # [N, H, W]
        bright = images[..., 0] > 128.0  # [B, H, W]
        masks = tf.cast(inside[None] & bright[:, None], tf.uint8)
        batch = shape[0]
        return {
            "boxes": tf.tile(boxes[None], [batch, 1, 1]),
            "scores": scores * tf.cast(valid, tf.float32),
            "classes": tf.tile(classes[None], [batch, 1]),
            "masks": masks,
            "num_detections": tf.fill([batch], n - 1),
        }

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                "class_names": self.class_names, "category_ids": self.category_ids,
                "max_detections": self.max_detections}
