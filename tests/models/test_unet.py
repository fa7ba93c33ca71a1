import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.models.unet import PadToMultiple, UNet
from tests.layer_testing import check_layer, check_model_round_trip


def paper_parameter_count(input_channels=1, num_classes=2, f=64):
    """U-Net of Ronneberger et al. by hand: 3x3 convs, 2x2 up-convs, 1x1 classifier, biases."""
    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    total, cin = 0, input_channels
    for level in range(5):  # contracting path + bottom
        cout = f * 2**level
        total += conv(3, cin, cout) + conv(3, cout, cout)
        cin = cout
    for level in reversed(range(4)):  # expanding path
        cout = f * 2**level
        total += conv(2, cin, cout) + conv(3, 2 * cout, cout) + conv(3, cout, cout)
        cin = cout
    return total + conv(1, cin, num_classes)


def test_paper_net_parameters_and_572_to_388_build_only():
    assert paper_parameter_count() == 31_030_658
    model = segzoo.get_model("unet", padding="valid", input_channels=1, num_classes=2)
    assert model.count_params() == 31_030_658
    fn = tf.function(model.__call__).get_concrete_function(tf.TensorSpec([1, 572, 572, 1]))
    assert tuple(fn.structured_outputs.shape) == (1, 388, 388, 2)
    assert model.task == "semantic" and model.class_names == ["class_0", "class_1"]
    # Default configuration: same padding, RGB input, 2 classes.
    default = segzoo.get_model("unet")
    assert default.count_params() == paper_parameter_count(input_channels=3)
    assert (default.padding, default.input_channels, default.num_classes) == ("same", 3, 2)


def test_same_padding_keeps_any_input_size_and_pads_with_zeros_inside():
    model = segzoo.get_model("unet", base_filters=4, num_classes=3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 37, 53, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == (2, 37, 53, 3)
    # Padding happens after scaling to [-1, 1] with zeros, i.e. with pixel value 127.5,
    # bottom/right up to 48 x 64: the same as padding the image by hand.
    padded = np.full((2, 48, 64, 3), 127.5, np.float32)
    padded[:, :37, :53] = x
    expected = keras.ops.convert_to_numpy(model(padded))[:, :37, :53]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for size in [(1, 1), (16, 16), (17, 31)]:
        assert model(np.zeros((1, *size, 3), np.float32)).shape == (1, *size, 3)


def test_valid_padding_output_is_the_centred_input_region():
    # Sizes 16 * b + 124 tile exactly and give size - 184. With left-right symmetric kernels
    # (2x2 up-convs included) the net commutes with a flip exactly when every crop-and-concat
    # crop is centred.
    model = segzoo.get_model("unet", padding="valid", base_filters=4, input_channels=1)
    rng = np.random.default_rng(1)
    model.set_weights([(w + w[:, ::-1]) / 2 if w.ndim == 4 else rng.normal(0, 0.1, w.shape)
                       for w in model.get_weights()])
    x = rng.uniform(0, 255, (1, 188, 204, 1)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x))
    assert out.shape == (1, 4, 20, 2)
    flipped = keras.ops.convert_to_numpy(model(x[:, :, ::-1]))[:, :, ::-1]
    scale = np.abs(out).max()
    assert np.abs(out - out[:, :, ::-1]).max() > 0.05 * scale  # the output itself is not symmetric
    np.testing.assert_allclose(flipped, out, atol=1e-4 * scale)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_round_trip(batch_norm):
    model = segzoo.get_model("unet", base_filters=8, num_classes=3, batch_norm=batch_norm,
                             class_names=["bg", "circle", "square"])
    x = np.random.default_rng(2).uniform(0, 255, (2, 24, 40, 3)).astype(np.float32)
    check_model_round_trip(model, x, atol=1e-5, rtol=1e-5)
    config = model.get_config()
    assert config["class_names"] == ["bg", "circle", "square"]
    assert UNet.from_config(config).get_config() == config


def test_one_fit_step():
    model = segzoo.get_model("unet", base_filters=4, num_classes=2)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    y = (x.mean(axis=-1) > 127.5).astype(np.int32)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        segzoo.get_model("unet", padding="full")
    with pytest.raises(ValueError, match="base_filters"):
        segzoo.get_model("unet", base_filters=0)
    with pytest.raises(ValueError, match="class_names"):
        segzoo.get_model("unet", num_classes=3, class_names=["a", "b"])


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_mixed_precision_logits_are_float32(padding):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = segzoo.get_model("unet", base_filters=4, padding=padding)
        size = 188 if padding == "valid" else 20
        logits = model(np.zeros((1, size, size, 3), np.float32))
        assert model.get_layer("down1_conv1").compute_dtype == "float16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert logits.dtype == "float32"


def test_pad_to_multiple_layer():
    x = np.random.default_rng(4).normal(size=(2, 5, 16, 3)).astype(np.float32)
    out = check_layer(PadToMultiple, {"multiple": 8}, x, expected_output_shape=(2, 8, 16, 3))
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (0, 3), (0, 0), (0, 0)]))
