"""FeaturePyramid against a NumPy re-implementation of torchvision's FPN forward."""

import keras
import numpy as np
import pytest

from segzoo.blocks import FeaturePyramid
from segzoo.blocks.fpn import nearest_resize
from tests.layer_testing import check_model_round_trip

# A ResNet-like pyramid of an odd-sized image (ceil-mode strides): 67x99 input.
SHAPES = {"C2": (17, 25, 8), "C3": (9, 13, 16), "C4": (5, 7, 12), "C5": (3, 4, 20)}


def _features(batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal((batch, *s)).astype(np.float32) for k, s in SHAPES.items()}


def _torch_nearest(x, height, width):
    """F.interpolate(mode="nearest", size=...): src = floor(dst * float(in / out))."""
    rows = np.minimum(np.floor(np.arange(height) * np.float32(x.shape[1] / height)),
                      x.shape[1] - 1).astype(int)
    cols = np.minimum(np.floor(np.arange(width) * np.float32(x.shape[2] / width)),
                      x.shape[2] - 1).astype(int)
    return x[:, rows][:, :, cols]


def _conv(x, kernel, bias):
    """'same' convolution (zero padding k // 2, stride 1) in float64."""
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(k):
        for j in range(k):
            window = padded[:, i:i + x.shape[1], j:j + x.shape[2]]
            out += window @ kernel[i, j].astype(np.float64)
    return out + bias


def _reference_fpn(features, layer, extra):
    """torchvision.ops.FeaturePyramidNetwork.forward + LastLevelMaxPool in NumPy."""
    xs = [features[k] for k in ("C2", "C3", "C4", "C5")]
    lateral = [(c.kernel.numpy(), c.bias.numpy()) for c in layer.lateral_convs]
    output = [(c.kernel.numpy(), c.bias.numpy()) for c in layer.output_convs]
    last_inner = _conv(xs[-1], *lateral[-1])
    results = [_conv(last_inner, *output[-1])]
    for idx in range(len(xs) - 2, -1, -1):
        inner_lateral = _conv(xs[idx], *lateral[idx])
        top_down = _torch_nearest(last_inner, *inner_lateral.shape[1:3])
        last_inner = inner_lateral + top_down
        results.insert(0, _conv(last_inner, *output[idx]))
    if extra:
        results.append(results[-1][:, ::2, ::2])  # max_pool2d(kernel 1, stride 2)
    return {f"P{i + 2}": r for i, r in enumerate(results)}


@pytest.mark.parametrize("extra", [True, False])
def test_top_down_path_equals_numpy_reference(extra):
    features = _features()
    layer = FeaturePyramid(num_channels=6, extra_pool_level=extra)
    layer(features)
    rng = np.random.default_rng(5)
    for variable in layer.weights:  # non-zero biases so that they are checked too
        variable.assign(rng.standard_normal(variable.shape).astype(np.float32) * 0.3)
    ours = {k: np.asarray(v) for k, v in layer(features).items()}
    expected = _reference_fpn(features, layer, extra)
    assert sorted(ours) == sorted(expected)
    for key in expected:
        assert ours[key].shape == expected[key].shape, key
        np.testing.assert_allclose(ours[key], expected[key], atol=2e-4, rtol=1e-4)


def test_odd_sizes_and_list_input():
    features = _features()
    layer = FeaturePyramid(num_channels=4)
    out = layer([features[k] for k in ("C2", "C3", "C4", "C5")])
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "P2": (2, 17, 25, 4), "P3": (2, 9, 13, 4), "P4": (2, 5, 7, 4),
        "P5": (2, 3, 4, 4), "P6": (2, 2, 2, 4),
    }
    # The same layer object reads dicts keyed P* as well (levels from the keys).
    renamed = {k.replace("C", "P"): v for k, v in features.items()}
    out_dict = layer(renamed)
    for key in out:
        np.testing.assert_allclose(np.asarray(out[key]), np.asarray(out_dict[key]), atol=1e-6)


def test_nearest_resize_is_repeat_then_crop():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 3, 4, 2)
    np.testing.assert_array_equal(
        np.asarray(nearest_resize(x, 6, 8)), x.repeat(2, axis=1).repeat(2, axis=2))
    np.testing.assert_array_equal(
        np.asarray(nearest_resize(x, 5, 7)), x.repeat(2, axis=1).repeat(2, axis=2)[:, :5, :7])
    np.testing.assert_array_equal(np.asarray(nearest_resize(x, 5, 7)), _torch_nearest(x, 5, 7))


def test_default_initialisation_is_torchvision_kaiming_uniform_a1():
    layer = FeaturePyramid(num_channels=64)
    layer({"C2": np.zeros((1, 8, 8, 128), np.float32), "C3": np.zeros((1, 4, 4, 256), np.float32)})
    for conv in layer.lateral_convs + layer.output_convs:
        kernel = conv.kernel.numpy()
        fan_in = np.prod(kernel.shape[:3])
        bound = np.sqrt(3.0 / fan_in)  # gain sqrt(2 / (1 + a^2)) = 1
        assert np.abs(kernel).max() <= bound
        np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3.0), rtol=0.05)
        np.testing.assert_array_equal(conv.bias.numpy(), 0.0)


def test_config_and_keras_round_trip_and_fit_step():
    init = {"num_channels": 8, "extra_pool_level": True, "min_level": 2,
            "kernel_regularizer": "l2"}
    layer = FeaturePyramid(**init)
    config = layer.get_config()
    for key in init:
        assert key in config
    assert FeaturePyramid.from_config(config).get_config() == config

    features = _features()
    inputs = {k: keras.Input(shape=s, name=k) for k, s in SHAPES.items()}
    model = keras.Model(inputs, layer(inputs))
    eager = layer(features)
    symbolic = model.predict(features, verbose=0)
    for key in eager:
        np.testing.assert_allclose(np.asarray(eager[key]), symbolic[key], atol=1e-5)
    check_model_round_trip(model, features)

    targets = {k: np.zeros_like(v) for k, v in symbolic.items()}
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(features, targets, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_invalid_inputs():
    layer = FeaturePyramid(num_channels=4)
    with pytest.raises(ValueError, match="consecutive"):
        layer({"C2": np.zeros((1, 8, 8, 3), np.float32), "C4": np.zeros((1, 2, 2, 3), np.float32)})
    with pytest.raises(ValueError, match="keys"):
        FeaturePyramid(num_channels=4)({"res": np.zeros((1, 8, 8, 3), np.float32)})
    with pytest.raises(ValueError, match="num_channels"):
        FeaturePyramid(num_channels=0)
