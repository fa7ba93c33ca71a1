"""ResNet backbones against keras.applications, torchvision's architecture and NumPy."""

import os

import keras
import numpy as np
import pytest

from segzoo.models.backbones import (
    FrozenBatchNormalization,
    ImageNormalization,
    ResNetBackbone,
    resnet18,
    resnet50,
    resnet_backbone,
    set_trainable_stages,
)
from segzoo.models.backbones import resnet_weights as resnet_module
from segzoo.models.backbones.resnet import stage_of_layer
from tests.layer_testing import check_layer, check_model_round_trip

LEVELS = ("C2", "C3", "C4", "C5")


def _weighted_layers(model):
    return [(layer.name, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers if layer.weights]


def _torch_parameter_count(model):
    """Parameters as torch counts them: BN running statistics are buffers."""
    return sum(int(np.prod(w.shape)) for w in model.weights
               if not w.path.endswith(("moving_mean", "moving_variance")))


def _torchvision_count_by_formula(block, blocks):
    """Parameters of torchvision's resnet without fc, from the architecture."""
    total = 7 * 7 * 3 * 64 + 2 * 64  # conv1 + bn1
    in_channels = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        out_channels = width * (4 if block == "bottleneck" else 1)
        for index in range(count):
            if block == "bottleneck":
                total += in_channels * width + 2 * width          # conv1 1x1 + bn1
                total += 9 * width * width + 2 * width            # conv2 3x3 + bn2
                total += width * out_channels + 2 * out_channels  # conv3 1x1 + bn3
            else:
                total += 9 * in_channels * width + 2 * width
                total += 9 * width * width + 2 * width
            stride = 2 if index == 0 and stage > 0 else 1
            if index == 0 and (stride != 1 or in_channels != out_channels):
                total += in_channels * out_channels + 2 * out_channels  # downsample
            in_channels = out_channels
    return total


def _randomise_batchnorm(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith("moving_variance"):
            w.assign(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
        elif w.path.endswith(("moving_mean", "beta", "bias")):
            w.assign(rng.normal(0.0, 0.1, w.shape).astype("float32"))
        elif w.path.endswith("gamma"):
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))


@pytest.mark.parametrize("depth", [50, pytest.param(101, marks=pytest.mark.slow)])
def test_keras_layout_equals_keras_applications(depth):
    builder = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101}[depth]
    reference = builder(weights=None, include_top=False, input_shape=(64, 64, 3))
    ours = resnet_backbone(depth, input_shape=(64, 64, 3))
    assert _weighted_layers(ours) == _weighted_layers(reference)
    assert ours.count_params() == reference.count_params()
    assert ours.count_params() == {50: 23_587_712, 101: 42_658_176}[depth]


@pytest.mark.parametrize("depth,block,blocks,expected", [
    # torchvision's parameter counts minus its fc layer (512 or 2048 -> 1000):
    (18, "basic", (2, 2, 2, 2), 11_689_512 - 513_000),
    (34, "basic", (3, 4, 6, 3), 21_797_672 - 513_000),
    (50, "bottleneck", (3, 4, 6, 3), 25_557_032 - 2_049_000),
    pytest.param(101, "bottleneck", (3, 4, 23, 3), 44_549_160 - 2_049_000,
                 marks=pytest.mark.slow),
])
def test_torchvision_layout_parameter_counts(depth, block, blocks, expected):
    assert _torchvision_count_by_formula(block, blocks) == expected
    model = resnet_backbone(depth, layout="torchvision", freeze_batchnorm=True)
    assert _torch_parameter_count(model) == expected
    # Frozen BN: only the conv kernels (no biases in this layout) train.
    conv_params = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
                      if isinstance(layer, keras.layers.Conv2D))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == conv_params


@pytest.mark.parametrize("layout", ["keras", "torchvision"])
def test_output_strides_on_odd_sizes(layout):
    model = resnet18(layout=layout)
    out = model(np.zeros((1, 65, 97, 3), np.float32))
    assert sorted(out) == list(LEVELS)
    height, width = 65, 97
    height, width = -(-height // 4), -(-width // 4)
    for level, channels in zip(LEVELS, (64, 128, 256, 512), strict=True):
        assert tuple(out[level].shape) == (1, height, width, channels), level
        height, width = -(-height // 2), -(-width // 2)
    assert model.out_channels == dict(zip(LEVELS, (64, 128, 256, 512), strict=True))


# --- A NumPy forward pass of torchvision's ResNet (float64) -----------------

def _np_conv(x, kernel, stride, pad, bias=None):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    out_h = (x.shape[1] - k) // stride + 1
    out_w = (x.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            window = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out += window @ kernel[i, j]
    return out if bias is None else out + bias


def _np_bn(x, layer, eps=1e-5):
    gamma, beta, mean, var = (w.numpy().astype(np.float64) for w in layer.weights)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _np_maxpool_3x3_s2_p1(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    out_h, out_w = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    windows = [x[:, i:i + 2 * (out_h - 1) + 1:2, j:j + 2 * (out_w - 1) + 1:2]
               for i in range(3) for j in range(3)]
    return np.max(windows, axis=0)


def _np_torchvision_resnet(model, images, block, blocks):
    """torchvision.models.resnet forward (v1.5: stride in the 3x3), NumPy float64."""
    layer = model.get_layer

    def conv_bn(x, name, stride, pad):
        kernel = layer(f"{name}_conv").kernel.numpy().astype(np.float64)
        return _np_bn(_np_conv(x, kernel, stride, pad), layer(f"{name}_bn"))

    relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
    x = (images / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    x = _np_maxpool_3x3_s2_p1(relu(conv_bn(x, "conv1", 2, 3)))
    outputs = {}
    for stage, count in enumerate(blocks):
        for index in range(count):
            name = f"conv{stage + 2}_block{index + 1}"
            stride = 2 if index == 0 and stage > 0 else 1
            has_projection = any(lay.name == f"{name}_0_conv" for lay in model.layers)
            shortcut = conv_bn(x, f"{name}_0", stride, 0) if has_projection else x
            if block == "bottleneck":
                y = relu(conv_bn(x, f"{name}_1", 1, 0))
                y = relu(conv_bn(y, f"{name}_2", stride, 1))
                y = conv_bn(y, f"{name}_3", 1, 0)
            else:
                y = relu(conv_bn(x, f"{name}_1", stride, 1))
                y = conv_bn(y, f"{name}_2", 1, 1)
            x = relu(y + shortcut)
        outputs[f"C{stage + 2}"] = x
    return outputs


@pytest.mark.parametrize("depth,block,blocks,size", [
    (18, "basic", (2, 2, 2, 2), (38, 51)),
    (50, "bottleneck", (3, 4, 6, 3), (32, 45)),
])
def test_torchvision_layout_equals_numpy_torchvision_forward(depth, block, blocks, size):
    model = resnet_backbone(depth, layout="torchvision", freeze_batchnorm=True)
    _randomise_batchnorm(model)
    images = np.random.default_rng(1).uniform(0, 255, (2, *size, 3)).astype(np.float32)
    ours = model(images, training=True)  # frozen BN ignores training=True
    expected = _np_torchvision_resnet(model, images.astype(np.float64), block, blocks)
    for level in LEVELS:
        scale = np.abs(expected[level]).max()
        np.testing.assert_allclose(np.asarray(ours[level]) / scale, expected[level] / scale,
                                   atol=2e-5, err_msg=level)


@pytest.mark.slow  # ~25 s: two ResNet-50 builds, three loads
def test_keras_weights_round_trip_by_name(tmp_path):
    reference = keras.applications.ResNet50(weights=None, include_top=False)
    _randomise_batchnorm(reference, seed=3)
    taps = keras.Model(reference.input, [reference.get_layer(f"conv{k}_block{n}_out").output
                                         for k, n in ((2, 3), (3, 4), (4, 6), (5, 3))])
    images = np.random.default_rng(2).uniform(0, 255, (1, 67, 45, 3)).astype(np.float32)
    expected = taps.predict(keras.applications.resnet.preprocess_input(images.copy()), verbose=0)

    legacy = str(tmp_path / "resnet50.h5")
    reference.save(legacy)  # legacy HDF5: weights keyed by layer name
    modern = str(tmp_path / "resnet50.weights.h5")
    reference.save_weights(modern)
    for path, freeze in ((legacy, False), (legacy, True), (modern, True)):
        ours = resnet50(weights=path, freeze_batchnorm=freeze)
        out = ours(images)
        for level, ref in zip(LEVELS, expected, strict=True):
            np.testing.assert_allclose(np.asarray(out[level]), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
def test_weights_file_round_trip_fast(tmp_path, suffix):
    source = resnet18()
    _randomise_batchnorm(source, seed=5)
    path = str(tmp_path / f"r18{suffix}")
    source.save(path) if suffix == ".h5" else source.save_weights(path)
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    expected = source(images)
    loaded = resnet18(weights=path, freeze_batchnorm=True)
    for level in LEVELS:
        np.testing.assert_allclose(np.asarray(loaded(images)[level]),
                                   np.asarray(expected[level]), atol=1e-5, rtol=1e-5)


def test_imagenet_weights_from_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(resnet_module, "_keras_cache_dirs", lambda: [str(tmp_path / "models")])

    def offline(fname, file_hash):
        raise OSError("network is unreachable")

    monkeypatch.setattr(resnet_module, "_download", offline)
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(FileNotFoundError, match=fname) as error:
        resnet50(weights="imagenet")
    assert str(tmp_path / "models") in str(error.value)

    reference = keras.applications.ResNet50(weights=None, include_top=False)
    _randomise_batchnorm(reference, seed=4)
    os.makedirs(tmp_path / "models")
    reference.save(str(tmp_path / "models" / fname))
    ours = resnet50(weights="imagenet")
    np.testing.assert_array_equal(ours.get_layer("conv4_block2_3_bn").moving_variance.numpy(),
                                  reference.get_layer("conv4_block2_3_bn").moving_variance.numpy())


def test_weight_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGZOO_HOME", str(tmp_path / "segzoo_home"))
    monkeypatch.setenv("SEGZOO_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        resnet18(weights=str(tmp_path / "missing.h5"))
    # Keras publishes no ResNet-18 ImageNet file; the torchvision one needs the torchvision layout.
    with pytest.raises(ValueError, match="layout='torchvision'"):
        resnet18(weights="imagenet")
    # torchvision layout + "imagenet": torchvision's file, converted once; offline and absent,
    # one line naming the file and where to put it.
    with pytest.raises(FileNotFoundError, match=r"resnet50-0676ba61\.pth .*put it there"):
        resnet_backbone(50, weights="imagenet", layout="torchvision")
    path = str(tmp_path / "r18.h5")
    resnet18().save(path)
    with pytest.raises(ValueError, match="other shapes"):
        resnet18(weights=path, layout="torchvision")  # bias-free convs do not fit
    with pytest.raises(ValueError, match="depth"):
        ResNetBackbone(depth=42)
    with pytest.raises(ValueError, match="layout"):
        ResNetBackbone(depth=18, layout="caffe")


def test_frozen_batchnorm_stays_frozen():
    model = resnet18(freeze_batchnorm=True)
    _randomise_batchnorm(model)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    before = [w.numpy() for w in model.weights]
    train, infer = model(images, training=True), model(images, training=False)
    np.testing.assert_array_equal(np.asarray(train["C5"]), np.asarray(infer["C5"]))
    for layer in model.layers:
        layer.trainable = True
    set_trainable_stages(model, "all")
    assert all("_bn" not in w.path for w in model.trainable_weights)
    assert all(not isinstance(layer, FrozenBatchNormalization) or not layer.trainable
               for layer in model.layers)
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)  # moving statistics untouched


@pytest.mark.parametrize("spec,stages", [
    ("heads", set()), ("5+", {5}), ("4+", {4, 5}), ("3+", {3, 4, 5}),
    ("2+", {2, 3, 4, 5}), ("all", {1, 2, 3, 4, 5}),
])
def test_set_trainable_stages(spec, stages):
    model = resnet18()
    set_trainable_stages(model, spec)
    trainable = {stage_of_layer(layer.name)
                 for layer in model.layers if layer.trainable_weights}
    assert trainable == stages
    assert model.get_config()["trainable_stages"] == spec


def test_invalid_trainable_spec():
    with pytest.raises(ValueError, match="3\\+"):
        set_trainable_stages(resnet18(), "conv4")


def test_keras_round_trip():
    model = resnet18(layout="torchvision", freeze_batchnorm=True, trainable_stages="4+")
    config = model.get_config()
    clone = ResNetBackbone.from_config(config)
    assert clone.get_config() == config
    assert len(clone.trainable_weights) == len(model.trainable_weights) == 10
    images = np.random.default_rng(0).uniform(0, 255, (1, 40, 56, 3)).astype(np.float32)
    check_model_round_trip(model, images)


def test_image_normalization():
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    caffe = check_layer(ImageNormalization, {"mode": "caffe"}, images)
    np.testing.assert_allclose(
        caffe, keras.applications.resnet.preprocess_input(images.copy()), atol=1e-4)
    torch = check_layer(ImageNormalization, {"mode": "torch"}, images)
    expected = (images / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(torch, expected, atol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        ImageNormalization("tf")
