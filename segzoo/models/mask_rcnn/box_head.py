"""Box head: TwoMLPHead (fc6, fc7) and the class / box predictor.

`TwoMLPHead` flattens pooled RoI features `[R, 7, 7, C]` and applies two
fully connected layers of `representation_size` (1024) with ReLU.
`BoxPredictor` gives class logits `[R, K + 1]` (index 0 = background) and
class-specific box deltas `[R, K + 1, 4]` (weights (10, 10, 5, 5) in the
box coder). Its layers are named `cls_score` and `bbox_pred` (torchvision's
names): the class-dependent layers skipped when fine-tuning to another class
count. Init: fc6/fc7 as torch's default Linear (uniform +-1/sqrt(fan_in)),
bias 0; predictor as detectron2: normal std 0.01 (classes), 0.001 (boxes).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _torch_linear_init():
    """torch.nn.Linear's kaiming_uniform_(a=sqrt(5)): uniform in +-1/sqrt(fan_in)."""
    return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")


@keras.saving.register_keras_serializable(package="segzoo")
class TwoMLPHead(keras.layers.Layer):
    """`[R, S, S, C]` pooled features -> float `[R, representation_size]`."""

    def __init__(self, representation_size=1024, **kwargs):
        super().__init__(**kwargs)
        self.representation_size = int(representation_size)
        self.flatten = keras.layers.Flatten(dtype=self.dtype_policy)
        self.fc6 = keras.layers.Dense(self.representation_size, activation="relu", dtype=self.dtype_policy,
                                      kernel_initializer=_torch_linear_init(), name="fc6")
        self.fc7 = keras.layers.Dense(self.representation_size, activation="relu", dtype=self.dtype_policy,
                                      kernel_initializer=_torch_linear_init(), name="fc7")

    def build(self, input_shape):
        flat = 1
        for dim in input_shape[1:]:
            flat *= int(dim)
        self.fc6.build((None, flat))
        self.fc7.build((None, self.representation_size))
        self.built = True

    def call(self, features):
        return self.fc7(self.fc6(self.flatten(features)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.representation_size)

    def get_config(self):
        config = super().get_config()
        config["representation_size"] = self.representation_size
        return config


@keras.saving.register_keras_serializable(package="segzoo")
class BoxPredictor(keras.layers.Layer):
    """`[R, D]` -> (float32 logits `[R, K + 1]`, float32 deltas `[R, K + 1, 4]`).

    Args:
        num_classes: K foreground classes (the outputs have K + 1 entries).
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        # float32 under a mixed policy (class scores and box deltas decide NMS and the boxes).
        self.cls_score = keras.layers.Dense(
            self.num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            dtype="float32", name="cls_score")
        self.bbox_pred = keras.layers.Dense(
            4 * (self.num_classes + 1), kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype="float32", name="bbox_pred")

    def build(self, input_shape):
        self.cls_score.build(input_shape)
        self.bbox_pred.build(input_shape)
        self.built = True

    def call(self, features):
        logits = tf.cast(self.cls_score(features), tf.float32)
        deltas = tf.cast(self.bbox_pred(features), tf.float32)
        return logits, tf.reshape(deltas, [-1, self.num_classes + 1, 4])

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config
