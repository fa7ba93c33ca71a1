"""The serving module's own pre-processing, in process: valid U-Net tiling, grey input."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.export.serving import ServingModule
from tests.export.helpers import keras_probabilities


def tileable(size):
    """The smallest valid-U-Net input 16 * b + 124 (b >= 4) covering size + 2 * 92."""
    return 16 * max(-(-(size + 60) // 16), 4) + 124


@pytest.mark.parametrize("height, width", [(30, 45), (200, 130), (5, 3)])
def test_valid_unet_output_covers_the_image(height, width):
    model = segzoo.get_model("unet", num_classes=3, base_filters=4, padding="valid")
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    module = ServingModule(model)  # the tf.function holds it weakly
    served = module.serving_default(tf.constant(image))
    # Reference: numpy's symmetric mirror (repeats for pads larger than the image),
    # the model on the tileable size, the top-left H x W of its output.
    mirrored = np.pad(image[0].astype(np.float32),
                      [(92, tileable(height) - height - 92), (92, tileable(width) - width - 92),
                       (0, 0)], mode="symmetric")
    logits = keras.ops.convert_to_numpy(model(mirrored[None]))
    assert logits.shape[1] >= height and logits.shape[2] >= width
    expected = keras_probabilities(model, mirrored[None])[:, :height, :width]
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    assert served["labels"].shape == (1, height, width)


def test_one_channel_model_gets_grey_pixels():
    model = segzoo.get_model("unet", num_classes=2, base_filters=4, input_channels=1)
    image = np.random.default_rng(1).integers(0, 256, (2, 20, 24, 3), dtype=np.uint8)
    module = ServingModule(model)  # the tf.function holds it weakly
    served = module.serving_default(tf.constant(image))
    grey = image.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])  # ITU-R 601
    expected = keras_probabilities(model, grey[..., None].astype(np.float32))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-4)
