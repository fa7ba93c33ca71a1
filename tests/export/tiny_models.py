"""A tiny semantic model following the segzoo model contract, for the export tests.

It stands in for FCN / U-Net where their size would slow the default tier:
a functional `keras.Model` subclass with `task = "semantic"`, `class_names`,
every constructor argument in `get_config()`, registered serialisable.
"""

from __future__ import annotations

import keras

from segzoo.models.base import resolve_class_names


@keras.saving.register_keras_serializable(package="segzoo_tests")
class TinySegmenter(keras.Model):
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
