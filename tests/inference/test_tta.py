"""Test-time augmentation: parsing, flip / scale passes against hand-built references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segzoo.inference.tta import TTAConfig, parse_tta, probability_fn, tta_probabilities, with_tta


def test_parse_tta_forms_and_errors():
    assert parse_tta("flip") == TTAConfig(flip=True, scales=(1.0,))
    assert parse_tta("flip,scales=0.75,1,1.25") == TTAConfig(True, (0.75, 1.0, 1.25))
    assert parse_tta("scales=0.5,2") == TTAConfig(False, (0.5, 2.0))
    assert parse_tta(None) is None and parse_tta("none") is None
    assert parse_tta("flip,scales=0.75,1,1.25").num_passes == 6
    for bad in ("flop", "flip,0.5", "scales=a", "scales=-1", "scales=0", "flip,scales=1,nan"):
        with pytest.raises(ValueError, match="^tta='"):
            parse_tta(bad)


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def position_dependent_fn(images):
    """Probabilities that depend on the pixel and on its column (so flips matter)."""
    images = np.asarray(images, np.float64)
    ramp = np.linspace(-2.0, 2.0, images.shape[2])[None, None, :, None]
    return _softmax(np.concatenate([images / 64.0, ramp * np.ones_like(images[..., :1])], -1))


def test_flip_averages_the_mirrored_pass_mirrored_back():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 9, 13, 3)).astype(np.float32)
    got = tta_probabilities(position_dependent_fn, images, TTAConfig(flip=True))
    want = 0.5 * (position_dependent_fn(images) + position_dependent_fn(images[:, :, ::-1])[:, :, ::-1])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, position_dependent_fn(images), atol=1e-3)  # the flip changed something


def test_scales_resize_with_opencv_bilinear_and_back():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    config = TTAConfig(flip=True, scales=(0.5, 1.0, 1.5))
    got = tta_probabilities(position_dependent_fn, image[None], config)[0]
    passes = []
    for scale in config.scales:
        size = (int(round(30 * scale)), int(round(20 * scale)))  # cv2: (width, height)
        scaled = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) if scale != 1 else image
        for flip in (False, True):
            x = scaled[:, ::-1] if flip else scaled
            p = position_dependent_fn(x[None])[0]
            p = p[:, ::-1] if flip else p
            passes.append(cv2.resize(p, (30, 20), interpolation=cv2.INTER_LINEAR) if scale != 1 else p)
    np.testing.assert_allclose(got, np.mean(passes, 0), atol=2e-4)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)  # still probabilities
    assert got.shape == (20, 30, 4)


def test_scale_one_without_flip_is_the_plain_model_exactly():
    from tests.export.tiny_models import TinySegmenter

    model = TinySegmenter(num_classes=3, width=4)
    fn = probability_fn(model)
    images = np.random.default_rng(2).integers(0, 255, (1, 17, 23, 3)).astype(np.uint8)
    plain = fn(images)
    np.testing.assert_array_equal(with_tta(fn, TTAConfig(scales=(1.0,)))(images), plain)
    assert with_tta(fn, None) is fn
    logits = model(images.astype(np.float32)).numpy()
    np.testing.assert_allclose(plain, _softmax(logits.astype(np.float64)), atol=1e-6)
