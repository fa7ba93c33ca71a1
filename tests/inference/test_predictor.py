"""segzoo.inference: one image through a model, via its serving_call, traced once."""

import numpy as np
import pytest

import segzoo
from segzoo.inference import predict_instances, predict_labels, predict_probabilities
from tests.export.tiny_models import TinyDetector, TinySegmenter


def test_predict_labels_is_the_argmax_of_the_logits():
    model = TinySegmenter(num_classes=3)
    image = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    logits = model(image[None].astype(np.float32)).numpy()[0]
    labels, probabilities = predict_labels(model, image, return_probabilities=True)
    np.testing.assert_array_equal(labels, logits.argmax(-1))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(probabilities, e / e.sum(-1, keepdims=True), atol=1e-6)
    # Any size, one trace.
    predict_labels(model, image[:5, :9])
    assert model._segzoo_traced["predict_semantic"].experimental_get_tracing_count() == 1
    with pytest.raises(ValueError, match="RGB image"):
        predict_labels(model, image[..., 0])


def test_valid_unet_prediction_covers_the_image():
    model = segzoo.get_model("unet", num_classes=2, base_filters=2, padding="valid")
    image = np.random.default_rng(1).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    assert predict_labels(model, image).shape == (21, 30)
    assert predict_probabilities(model, image[None]).shape == (1, 21, 30, 2)


def test_predict_instances_truncates_to_the_detections():
    model = TinyDetector(num_classes=3, max_detections=4)
    image = np.full((12, 10, 3), 200, np.uint8)
    detections = predict_instances(model, image)
    assert detections["boxes"].shape == (3, 4) and detections["masks"].shape == (3, 12, 10)
    assert list(detections["classes"]) == [1, 2, 3]
    with pytest.raises(ValueError, match="instance model"):
        predict_instances(TinySegmenter(num_classes=2), image)
