"""A tiny semantic model registered as "tiny_segmenter" for the fit-loop tests.

Two 3x3 convolutions and a 1x1 classifier (no batch norm, so replicas of a
distributed run compute exactly what one process computes).
"""

import keras

import segzoo
from segzoo.models.base import SegmentationModel, resolve_class_names

# Registered under a name of its own: tests/export/tiny_models.py has another TinySegmenter.
REGISTERED_NAME = "segzoo_tests>FitTinySegmenter"


@keras.saving.register_keras_serializable(package="segzoo_tests", name="FitTinySegmenter")
class TinySegmenter(SegmentationModel, keras.Model):
    task = "semantic"

    def __init__(self, num_classes=3, class_names=None, width=4, **kwargs):
        images = keras.Input((None, None, 3))
        x = keras.layers.Rescaling(1.0 / 255.0)(images)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv2")(x)
        logits = keras.layers.Conv2D(num_classes, 1, name="score", dtype="float32")(x)
        super().__init__(images, logits, **kwargs)
        self.num_classes = num_classes
        self.width = width
        self.class_names = resolve_class_names(class_names, num_classes)

    def get_config(self):
        return {"name": self.name, "num_classes": self.num_classes,
                "class_names": self.class_names, "width": self.width}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


if "tiny_segmenter" not in segzoo.registry._REGISTRY:
    segzoo.register_model("tiny_segmenter", task="semantic", description="test model")(TinySegmenter)


def tiny_recipe(**changes):
    """4 fixed 32x32 shapes images, full-image crops, no augmentation: every epoch is
    the same single batch of 4, so runs are comparable step by step."""
    import dataclasses

    from segzoo.training.recipes import Recipe

    recipe = Recipe(
        name="tiny", data="shapes", epochs=3, batch_size=4, image_size=32, optimizer="adam",
        learning_rate=1e-2, schedule="constant", augment=False, val_max_images=4,
        data_args={"num_images": 4, "image_size": 32},
    )
    return dataclasses.replace(recipe, **changes)
