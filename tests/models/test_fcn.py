import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import segzoo
from segzoo.blocks import Upsample2D
from segzoo.models.backbones import vgg
from segzoo.models.fcn import FCN, Scale
from segzoo.models.weights import load_weights_by_name
from tests.layer_testing import check_layer, check_model_round_trip

# Parameter counts of the Caffe reference nets with 21 classes (DESIGN.md), by hand:
# VGG16 convs 14,714,688; fc6 7*7*512*4096+4096; fc7 4096*4096+4096; score_fr 4096*21+21;
# score_pool4 512*21+21; score_pool3 256*21+21; bias-free deconvs k*k*21*21.
VGG_CONVS = 14_714_688
FC = 7 * 7 * 512 * 4096 + 4096 + 4096 * 4096 + 4096
SCORE_FR, SCORE_POOL4, SCORE_POOL3 = 4096 * 21 + 21, 512 * 21 + 21, 256 * 21 + 21


def deconv(k):
    return k * k * 21 * 21


EXPECTED_PARAMS = {
    "fcn32s": VGG_CONVS + FC + SCORE_FR + deconv(64),
    "fcn16s": VGG_CONVS + FC + SCORE_FR + SCORE_POOL4 + deconv(4) + deconv(32),
    "fcn8s": VGG_CONVS + FC + SCORE_FR + SCORE_POOL4 + SCORE_POOL3 + 2 * deconv(4) + deconv(16),
}
UPSAMPLERS = {"fcn32s": ["upscore"], "fcn16s": ["upscore2", "upscore16"],
              "fcn8s": ["upscore2", "upscore_pool4", "upscore8"]}


@pytest.fixture(scope="module")
def models():
    """One default build per variant, shared by the tests that do not modify weights."""
    return {name: segzoo.get_model(name) for name in EXPECTED_PARAMS}


def test_reference_parameter_counts(models):
    assert EXPECTED_PARAMS == {"fcn32s": 136_152_917, "fcn16s": 134_815_994,
                               "fcn8s": 134_489_759}
    for name, model in models.items():
        assert model.count_params() == EXPECTED_PARAMS[name], name
        frozen = sum(deconv(model.get_layer(n).kernel_size) for n in UPSAMPLERS[name])
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == EXPECTED_PARAMS[name] - frozen
        assert model.task == "semantic" and len(model.class_names) == 21
        assert model.get_layer("score").dtype_policy.name == "float32"  # also under mixed precision


@pytest.mark.parametrize("size", [(500, 500), (333, 417), (1, 1)])
def test_output_size_equals_input_size_build_only(models, size):
    for model in models.values():
        fn = tf.function(model.__call__).get_concrete_function(tf.TensorSpec([2, *size, 3]))
        assert tuple(fn.structured_outputs.shape) == (2, *size, 21)


def test_initial_logits_are_zero_at_64px(models):
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    for model in models.values():
        logits = keras.ops.convert_to_numpy(model(x))
        assert logits.shape == (1, 64, 64, 21)
        np.testing.assert_array_equal(logits, 0.0)


# --- Alignment -------------------------------------------------------------------------------
# Caffe's coord_map (fcn.berkeleyvision.org/surgery + caffe/coord_map.py): a conv/pool with kernel
# k, stride s, pad p maps input coordinate x to output (x + p - (k-1)/2) / s; a deconvolution maps
# x to s*x + (k-1)/2 - p. crop(a, b) uses offset = -(coordinate of b's origin in a's frame).
def _coord(layers, x=0.0):
    for kind, k, s, p in layers:
        x = (x + p - (k - 1) / 2) / s if kind == "conv" else s * x + (k - 1) / 2 - p
    return x


def _vgg_path(num_pools):
    layers = [("conv", 3, 1, 100), ("conv", 3, 1, 1), ("conv", 2, 2, 0)]
    for block in range(2, num_pools + 1):
        layers += [("conv", 3, 1, 1)] * (2 if block <= 2 else 3) + [("conv", 2, 2, 0)]
    return layers


FC_PATH = _vgg_path(5) + [("conv", 7, 1, 0), ("conv", 1, 1, 0), ("conv", 1, 1, 0)]


def _offset(path_big, path_ref):
    """Offset of the crop of the map at the end of path_big to the map at the end of path_ref."""
    # Image coordinate of each map's pixel 0 (the maps are affine in the image coordinate).
    def origin(path):
        scale = _coord(path, 1.0) - _coord(path, 0.0)
        return -_coord(path, 0.0) / scale, scale

    big_origin, big_scale = origin(path_big)
    ref_origin, ref_scale = origin(path_ref)
    assert big_scale == ref_scale
    offset = (ref_origin - big_origin) * big_scale
    assert offset == int(offset)
    return int(offset)


def test_crop_offsets_are_the_caffe_coord_map_offsets(models):
    up2 = FC_PATH + [("deconv", 4, 2, 0)]
    up4 = up2 + [("deconv", 4, 2, 0)]
    expected = {
        "fcn32s": {"score": _offset(FC_PATH + [("deconv", 64, 32, 0)], [])},
        "fcn16s": {"score_pool4c": _offset(_vgg_path(4) + [("conv", 1, 1, 0)], up2),
                   "score": _offset(up2 + [("deconv", 32, 16, 0)], [])},
        "fcn8s": {"score_pool4c": _offset(_vgg_path(4) + [("conv", 1, 1, 0)], up2),
                  "score_pool3c": _offset(_vgg_path(3) + [("conv", 1, 1, 0)], up4),
                  "score": _offset(up4 + [("deconv", 16, 8, 0)], [])},
    }
    assert expected == {"fcn32s": {"score": 19}, "fcn16s": {"score_pool4c": 5, "score": 27},
                        "fcn8s": {"score_pool4c": 5, "score_pool3c": 9, "score": 31}}
    for name, crops in expected.items():
        model = models[name]
        for layer_name, offset in crops.items():
            assert model.get_layer(layer_name).offset == (offset, offset)
        assert model.get_layer("block1_pad").padding == ((100, 100), (100, 100))


def _symmetrise(model, rng):
    """Left-right symmetric kernels (and random score layers): a flip-equivariant net."""
    for layer in model.layers:
        if not layer.weights:
            continue
        values = []
        for w in layer.get_weights():
            if layer.name.startswith("score"):
                w = rng.normal(0, 0.01, w.shape).astype(np.float32)
            if w.ndim == 4:
                w = (w + w[:, ::-1]) / 2
            values.append(w)
        layer.set_weights(values)


@pytest.mark.parametrize("name", [pytest.param("fcn32s", marks=pytest.mark.slow),
                                  pytest.param("fcn16s", marks=pytest.mark.slow), "fcn8s"])
def test_output_is_aligned_with_the_input(name):
    # With left-right symmetric kernels the net commutes with a horizontal flip exactly when
    # every crop is centred; at W = 58 (58 + 198 = 8 * 32) every map has an even size and the
    # Caffe crops are centred, so a misaligned crop breaks the equality.
    model = segzoo.get_model(name, num_classes=3)
    _symmetrise(model, np.random.default_rng(0))
    x = np.random.default_rng(1).uniform(0, 255, (1, 40, 58, 3)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(x))
    flipped = keras.ops.convert_to_numpy(model(x[:, :, ::-1]))[:, :, ::-1]
    scale = np.abs(out).max()
    assert scale > 0 and np.abs(out - out[:, :, ::-1]).max() > 0.01 * scale  # not trivial
    np.testing.assert_allclose(flipped, out, atol=1e-4 * scale)


# --- Options ---------------------------------------------------------------------------------
def test_learnable_upsampling_and_upsampling_modes():
    model = segzoo.get_model("fcn16s", num_classes=4, learnable_upsampling=True)
    trainable = {w.path.split("/")[0] for w in model.trainable_weights}
    assert {"upscore2", "upscore16"} <= trainable
    model = segzoo.get_model("fcn8s", num_classes=21, upsampling="nearest")
    assert model.count_params() == EXPECTED_PARAMS["fcn8s"] - 2 * deconv(4) - deconv(16)
    for name in UPSAMPLERS["fcn8s"]:
        assert isinstance(model.get_layer(name), Upsample2D)
        assert model.get_layer(name).mode == "nearest"
    assert tuple(model(np.zeros((1, 45, 37, 3), np.float32)).shape) == (1, 45, 37, 21)
    with pytest.raises(ValueError, match="upsampling"):
        segzoo.get_model("fcn8s", upsampling="bicubic")


def test_at_once_scales_the_skips():
    x = np.random.default_rng(2).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    plain = segzoo.get_model("fcn8s", num_classes=2)
    at_once = segzoo.get_model("fcn8s", num_classes=2, at_once=True)
    assert at_once.get_layer("scale_pool4").scale == 0.01
    assert at_once.get_layer("scale_pool3").scale == 0.0001
    rng = np.random.default_rng(3)
    for layer_name in ("score_pool4", "score_pool3"):
        layer = plain.get_layer(layer_name)
        layer.set_weights([rng.normal(size=layer.kernel.shape), np.zeros(2)])
    at_once.set_weights(plain.get_weights())
    outputs = []
    for model in (plain, at_once):
        probe = keras.Model(model.input, [model.get_layer("score_pool4").output,
                                          model.get_layer("score_pool3").output])
        outputs.append([keras.ops.convert_to_numpy(o) for o in probe(x)])
    assert np.abs(outputs[0][1]).max() > 0
    np.testing.assert_allclose(outputs[1][0], 0.01 * outputs[0][0], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(outputs[1][1], 1e-4 * outputs[0][1], rtol=1e-4, atol=1e-10)


@pytest.mark.slow
def test_round_trip_and_config():
    model = segzoo.get_model("fcn8s", num_classes=3, class_names=["bg", "a", "b"])
    rng = np.random.default_rng(4)
    for layer_name in ("score_fr", "score_pool4", "score_pool3"):
        layer = model.get_layer(layer_name)
        layer.set_weights([rng.normal(0, 0.01, w.shape) for w in layer.get_weights()])
    x = rng.uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    check_model_round_trip(model, x, atol=1e-5, rtol=1e-5)
    config = model.get_config()
    assert config["class_names"] == ["bg", "a", "b"] and config["skips"] == ["pool4", "pool3"]
    clone = FCN.from_config(config)
    assert clone.get_config() == config


@pytest.mark.slow
def test_one_fit_step_fcn32s():
    model = segzoo.get_model("fcn32s", num_classes=3)
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    y = np.random.default_rng(6).integers(0, 3, (2, 32, 32))
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], np.log(3), rtol=1e-5)  # zero logits
    assert np.abs(keras.ops.convert_to_numpy(model.get_layer("score_fr").kernel)).max() > 0


# --- Staged training -------------------------------------------------------------------------
def _fcn32s_with_random_scores():
    source = segzoo.get_model("fcn32s", num_classes=21)
    rng = np.random.default_rng(7)
    score = source.get_layer("score_fr")
    score.set_weights([rng.normal(size=w.shape) for w in score.get_weights()])
    return source


def _assert_staged_from_32s(target, source, report):
    vgg_layers = list(vgg.VGG16_CONV_LAYERS)
    assert report.loaded == vgg_layers + ["fc6", "fc7", "score_fr"]
    assert sorted(report.missing_in_source) == ["score_pool4", "upscore16", "upscore2"]
    assert report.unused_in_source == ["upscore"] and report.skipped_mismatched == {}
    for name in ["block1_conv1", "fc6", "score_fr"]:
        for a, b in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_staged_init_32s_to_16s(capsys):
    source = _fcn32s_with_random_scores()
    target = segzoo.get_model("fcn16s", num_classes=21)
    report = load_weights_by_name(target, source)
    _assert_staged_from_32s(target, source, report)
    assert "loaded 16 layers" in capsys.readouterr().out
    del target

    # Another class count: everything but the class-dependent layers, and it says so.
    other = segzoo.get_model("fcn16s", num_classes=5)
    report = load_weights_by_name(other, source)
    assert report.loaded == list(vgg.VGG16_CONV_LAYERS) + ["fc6", "fc7"]
    assert list(report.skipped_mismatched) == ["score_fr"]
    assert set(report.skipped_mismatched) <= set(other.class_dependent_layers)
    assert "skipped score_fr" in capsys.readouterr().out
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(other.get_layer("score_fr").kernel),
                                  0.0)
    with pytest.raises(ValueError, match="score_fr"):
        load_weights_by_name(other, source, skip_mismatched=False, verbose=False)


@pytest.mark.slow
def test_staged_init_from_a_keras_file(tmp_path):
    source = _fcn32s_with_random_scores()
    source.save(tmp_path / "model.keras")
    target = segzoo.get_model("fcn16s", num_classes=21)
    report = load_weights_by_name(target, str(tmp_path), verbose=False)  # a run directory
    _assert_staged_from_32s(target, source, report)


# --- VGG16 weights ---------------------------------------------------------------------------
def _write_keras_h5(path, weights):
    """A weights file in the layout of keras-applications' vgg16_*.h5 (legacy HDF5)."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in weights]
        for name, values in weights.items():
            group = f.create_group(name)
            names = [f"{name}/{w}:0" for w in ("kernel", "bias")[: len(values)]]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, v in zip(names, values, strict=True):
                group.create_dataset(n, data=v)


def test_vgg_layers_match_keras_applications(models):
    reference = keras.applications.VGG16(weights=None, include_top=False)
    model = models["fcn32s"]
    for name in vgg.VGG16_CONV_LAYERS:
        ours, theirs = model.get_layer(name), reference.get_layer(name)
        assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
        assert ours.get_config()["activation"] == theirs.get_config()["activation"] == "relu"
    assert [layer.name for layer in reference.layers if layer.weights] == list(
        vgg.VGG16_CONV_LAYERS)


def test_imagenet_weights_from_the_keras_cache(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    reference = keras.applications.VGG16(weights=None, include_top=False)
    weights = {layer.name: [rng.normal(0, 0.01, w.shape).astype(np.float32) for w in layer.weights]
               for layer in reference.layers if layer.weights}
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    _write_keras_h5(models_dir / vgg.WEIGHTS_FILE_NOTOP, weights)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(vgg, "_download", lambda fname: pytest.fail("must not download"))
    model = segzoo.get_model("fcn32s", num_classes=2, backbone_weights="imagenet")
    for name, values in weights.items():
        for a, b in zip(model.get_layer(name).get_weights(), values, strict=True):
            np.testing.assert_array_equal(a, b)
    assert model.get_config()["backbone_weights"] == "imagenet"
    # A path works the same; a non-weights file is a clear error.
    loaded = vgg.load_vgg16_weights(model, str(models_dir / vgg.WEIGHTS_FILE_NOTOP))
    assert loaded == list(vgg.VGG16_CONV_LAYERS)
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="bad.h5"):
        vgg.load_vgg16_weights(model, str(tmp_path / "bad.h5"))


def test_imagenet_weights_offline_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))

    def offline(fname):
        raise OSError("URL fetch failure: network is unreachable")

    monkeypatch.setattr(vgg, "_download", offline)
    with pytest.raises(ValueError) as error:
        vgg.find_imagenet_weights()
    message = str(error.value)
    assert vgg.WEIGHTS_FILE_NOTOP in message
    assert os.path.join(str(tmp_path / "keras_home"), "models") in message
    assert "network is unreachable" in message
    # Loading a saved model never fetches the backbone weights again.
    config = {"name": "fcn32s", "skips": [], "num_classes": 2, "backbone_weights": "imagenet"}
    assert FCN.from_config(config).get_config()["backbone_weights"] == "imagenet"


def test_fc_to_conv_equals_flatten_dense():
    # Keras' VGG16 top: Flatten (row, col, channel order) + Dense; FCN: a 7x7 valid conv.
    rng = np.random.default_rng(9)
    features = rng.normal(size=(2, 7, 7, 8)).astype(np.float32)
    kernel = rng.normal(size=(7 * 7 * 8, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    dense = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(5)])
    dense.build((None, 7, 7, 8))
    dense.layers[1].set_weights([kernel, bias])
    conv = keras.layers.Conv2D(5, 7)
    conv.build((None, 7, 7, 8))
    conv.set_weights(vgg.fc_to_conv([kernel, bias], (7, 7, 8, 5)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(conv(features))[:, 0, 0],
                               keras.ops.convert_to_numpy(dense(features)), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_imagenet_include_top_file_initialises_fc6_fc7(tmp_path):
    reference = keras.applications.VGG16(weights=None, include_top=True)
    weights = {layer.name: [keras.ops.convert_to_numpy(w) for w in layer.weights]
               for layer in reference.layers if layer.weights}
    path = tmp_path / vgg.WEIGHTS_FILE_TOP
    _write_keras_h5(path, weights)
    model = segzoo.get_model("fcn32s", num_classes=2, backbone_weights=str(path))
    fc6 = model.get_layer("fc6").get_weights()
    np.testing.assert_array_equal(fc6[0], weights["fc1"][0].reshape(7, 7, 512, 4096))
    np.testing.assert_array_equal(model.get_layer("fc7").get_weights()[1], weights["fc2"][1])
    # The conv net equals Keras' VGG16 top on a 224x224 image (no pad, single position).
    x = np.random.default_rng(10).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    expected = keras.Model(reference.input, reference.get_layer("fc2").output)(
        keras.applications.vgg16.preprocess_input(x.copy()))
    pool5 = keras.Model(reference.input, reference.get_layer("block5_pool").output)(
        keras.applications.vgg16.preprocess_input(x.copy()))
    fc7 = model.get_layer("fc7")(model.get_layer("fc6")(pool5))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fc7)[:, 0, 0],
                               keras.ops.convert_to_numpy(expected), rtol=1e-3, atol=1e-3)


def test_caffe_preprocess_equals_keras_vgg16_preprocess_input():
    from segzoo.models.backbones.preprocessing import CaffeVGGPreprocess, ImageNormalization

    x = np.random.default_rng(11).uniform(0, 255, (2, 5, 6, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    out = check_layer(ImageNormalization, {"mode": "caffe"}, x, expected_output_shape=x.shape)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # The name older FCN checkpoints saved still loads, as the same normalisation.
    old = check_layer(CaffeVGGPreprocess, {}, x, expected_output_shape=x.shape)
    np.testing.assert_allclose(old, expected, atol=1e-4)


def test_scale_layer():
    x = np.random.default_rng(12).normal(size=(2, 3, 4, 5)).astype(np.float32)
    out = check_layer(Scale, {"scale": 0.01}, x, expected_output_shape=x.shape)
    np.testing.assert_allclose(out, 0.01 * x, rtol=1e-6)


def test_vgg16_backbone_pyramid_equals_keras_vgg16():
    backbone = vgg.vgg16_backbone()
    reference = keras.applications.VGG16(weights=None, include_top=False)
    backbone.set_weights(reference.get_weights())
    x = np.random.default_rng(13).uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    features = backbone(x)
    assert sorted(features) == [f"pool{i}" for i in range(1, 6)]
    for i in range(1, 6):
        assert tuple(features[f"pool{i}"].shape)[1:3] == (64 // 2**i, 96 // 2**i)
    expected = reference(keras.applications.vgg16.preprocess_input(x.copy()))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features["pool5"]),
                               keras.ops.convert_to_numpy(expected), rtol=1e-4, atol=1e-4)


def _fcn_parameter_count(skips, num_classes, base_filters=64, fc_channels=4096):
    """Parameters of the Caffe FCN net by hand: VGG16 convs, fc6/fc7, score layers, deconvs."""
    count, previous = 0, 3
    for filters, convs in vgg.VGG16_BLOCKS:
        filters = filters * base_filters // 64
        for _ in range(convs):
            count += 9 * previous * filters + filters
            previous = filters
    count += 49 * previous * fc_channels + fc_channels + fc_channels * fc_channels + fc_channels
    count += fc_channels * num_classes + num_classes
    pools = {"pool4": 8 * base_filters, "pool3": 4 * base_filters}
    kernels = {0: [64], 1: [4, 32], 2: [4, 4, 16]}[len(skips)]
    count += sum(pools[s] * num_classes + num_classes for s in skips)
    return count + sum(k * k * num_classes * num_classes for k in kernels)


def test_narrow_fcn_widths_for_cpu_ablations():
    # the hand count reproduces the Caffe nets' numbers at the VGG16 widths ...
    assert _fcn_parameter_count((), 21) == 136_152_917
    assert _fcn_parameter_count(("pool4", "pool3"), 21) == 134_489_759
    # ... and gives the narrow nets' (base_filters=8, fc_channels=256) that segzoo ablate trains
    for name, skips in (("fcn32s", ()), ("fcn8s", ("pool4", "pool3"))):
        model = segzoo.get_model(name, num_classes=4, base_filters=8, fc_channels=256)
        assert model.count_params() == _fcn_parameter_count(skips, 4, 8, 256)
        assert model.get_layer("block5_conv3").filters == 64 and model.get_layer("fc7").filters == 256
        assert model(np.zeros((1, 37, 50, 3), np.float32)).shape == (1, 37, 50, 4)
        config = model.get_config()
        assert (config["base_filters"], config["fc_channels"]) == (8, 256)
        assert FCN.from_config(config).count_params() == model.count_params()
    with pytest.raises(ValueError, match="needs the VGG16 widths"):
        segzoo.get_model("fcn32s", num_classes=4, base_filters=8, backbone_weights="imagenet")
    with pytest.raises(ValueError, match="base_filters must be a multiple of 8, got 12"):
        segzoo.get_model("fcn32s", num_classes=4, base_filters=12)


def test_init_skip_copies_the_trunk_and_leaves_the_named_layers_fresh(capsys):
    """`segzoo ablate`'s shared pre-training: VGG16 + fc6 / fc7 are copied, the score and
    upsampling layers (`skip`) keep the target's fresh initialisation."""
    narrow = {"num_classes": 4, "base_filters": 8, "fc_channels": 32}
    source = segzoo.get_model("fcn8s", learnable_upsampling=True, **narrow)
    for layer in source.layers:
        if layer.weights:
            layer.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in layer.get_weights()])
    target = segzoo.get_model("fcn32s", **narrow)
    fresh_upscore = keras.ops.convert_to_numpy(target.get_layer("upscore").kernel)
    report = load_weights_by_name(target, source, skip=("score*", "upscore*"))
    assert report.loaded == list(vgg.VGG16_CONV_LAYERS) + ["fc6", "fc7"]
    assert report.not_copied == ["score_fr", "upscore"] and not report.skipped_mismatched
    assert "not copied (kept initialisation): score_fr, upscore" in capsys.readouterr().out
    for name in report.loaded:
        for got, want in zip(target.get_layer(name).get_weights(), source.get_layer(name).get_weights(),
                             strict=True):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(target.get_layer("score_fr").kernel), 0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(target.get_layer("upscore").kernel),
                                  fresh_upscore)
