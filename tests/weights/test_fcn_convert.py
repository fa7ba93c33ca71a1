"""The FCN authors' Caffe nets -> segzoo FCN: every blob lands in its layer, transposed right."""

import numpy as np
import pytest

import segzoo
from segzoo import cli
from segzoo.data.voc import VOC_CLASSES
from segzoo.models.backbones.preprocessing import CAFFE_BGR_MEAN, ImageNormalization
from segzoo.models.base import load_checkpoint
from segzoo.weights import caffe_proto
from segzoo.weights.caffe import FCN_BGR_MEAN, convert_fcn, fcn_layer_weights
from tests.weights import writers


def _assert_fcn_authors_preprocessing(model):
    """The converted FCN subtracts the FCN authors' BGR mean: (img[..., ::-1] - mean)."""
    image = np.random.default_rng(0).uniform(0, 255, (1, 5, 7, 3)).astype(np.float32)
    expected = image[..., ::-1].astype(np.float64) - np.array([104.00698793, 116.66876762, 122.67891434])
    np.testing.assert_allclose(model.get_layer("preprocess")(image).numpy(), expected, atol=2e-5)


def _assert_equal_to_blobs(model, layers):
    """Layer by layer: Keras kernels equal the Caffe blobs under the documented transposes."""
    names = {f"conv{b}_{i}": f"block{b}_conv{i}" for b in range(1, 6) for i in range(1, 4)}
    checked = []
    for layer in layers:
        if not layer.blobs:
            continue
        target = model.get_layer(names.get(layer.name, layer.name))
        weights = target.get_weights()
        if layer.type == "Deconvolution":  # (I, O, kh, kw) -> (kh, kw, O, I)
            assert len(weights) == 1
            np.testing.assert_array_equal(weights[0], np.transpose(layer.blobs[0], (2, 3, 1, 0)))
        else:  # (O, I, kh, kw) -> (kh, kw, I, O), bias as is
            np.testing.assert_array_equal(weights[0], np.transpose(layer.blobs[0], (2, 3, 1, 0)))
            np.testing.assert_array_equal(weights[1], layer.blobs[1])
        checked.append(target.name)
    return checked


class _Layer:
    def __init__(self, name, *shapes):
        self.name, self.weights = name, [np.zeros(s, np.float32) for s in shapes]


class _FCNLayers:
    """The FCN's layer names and kernel shapes without building 134 M parameters."""

    def __init__(self, name="fcn32s", skips=()):
        self.name = name
        self.layers = [_Layer("fc6", (7, 7, 512, 4096), (4096,)), _Layer("score_fr", (1, 1, 4096, 21), (21,)),
                       _Layer("upscore", (64, 64, 21, 21))]
        self.layers += [_Layer(f"score_{s}", (1, 1, 512, 21), (21,)) for s in skips]


@pytest.mark.slow  # 134 M parameters written, read, converted, saved and re-read: ~1 min
def test_cli_converts_fcn8s_caffemodel(tmp_path):
    path = writers.write_caffemodel(str(tmp_path / "fcn8s-heavy-pascal.caffemodel"),
                                    writers.fcn_caffe_layers("fcn8s"))
    out = str(tmp_path / "fcn8s_voc.keras")
    assert cli.main(["convert", "--from", "caffe", "--arch", "fcn8s", "--weights", path,
                     "--out", out]) == 0
    model = load_checkpoint(out)  # safe_mode=True
    assert model.class_names == list(VOC_CLASSES)
    _, layers = caffe_proto.read_caffemodel(path)
    checked = _assert_equal_to_blobs(model, layers)
    assert len(checked) == 13 + 2 + 3 + 3  # VGG convs, fc6/fc7, 3 score layers, 3 upsamplers
    assert sorted(n for n in checked if n.startswith("score")) == ["score_fr", "score_pool3", "score_pool4"]
    _assert_fcn_authors_preprocessing(model)
    logits = model(np.zeros((1, 20, 24, 3), np.float32))
    assert logits.shape == (1, 20, 24, 21) and np.isfinite(logits.numpy()).all()


def test_innerproduct_fc6_is_reshaped_in_caffes_chw_order():
    """VGG16's ILSVRC fc6 is an InnerProduct over pool5 flattened as (C, h, w)."""
    model = _FCNLayers()
    model.layers[0] = _Layer("fc6", (7, 7, 8, 16), (16,))  # narrow stand-in for (7, 7, 512, 4096)
    weight = np.arange(16 * 8 * 49, dtype=np.float32).reshape(16, 8 * 49)
    layer = caffe_proto.CaffeLayer("fc6", "InnerProduct", [], [], [weight, np.zeros(16, np.float32)],
                                   "layer")
    kernel = fcn_layer_weights([layer], model, "test")["fc6"][0]
    assert kernel.shape == (7, 7, 8, 16)
    # output o, channel c, row y, column x reads weight[o, c * 49 + y * 7 + x]
    for o in range(16):
        for c in range(8):
            np.testing.assert_array_equal(kernel[:, :, c, o], weight[o, c * 49:(c + 1) * 49].reshape(7, 7))


def test_wrong_variant_names_the_extra_layers(tmp_path):
    blob = [np.zeros((21, 1, 1, 1), np.float32), np.zeros(21, np.float32)]
    layers = [caffe_proto.CaffeLayer(name, "Convolution", [], [], blob, "layer")
              for name in ("score_fr", "score_pool4", "score-pool3")]  # first release: hyphens
    with pytest.raises(ValueError, match=r"\['score_pool4', 'score-pool3'\].*fcn32s"):
        fcn_layer_weights(layers, _FCNLayers(), "f.caffemodel")
    assert set(fcn_layer_weights(layers, _FCNLayers("fcn8s", ("pool4", "pool3")), "f")) == {
        "score_fr", "score_pool4", "score_pool3"}
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(writers._field(100, writers._field(1, b"conv1_1")))
    with pytest.raises(ValueError, match="no score_fr"):
        convert_fcn("fcn8s", str(junk))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s"])
def test_fcn32s_fcn16s_layer_equality(arch, tmp_path):
    path = writers.write_caffemodel(str(tmp_path / "m.caffemodel"), writers.fcn_caffe_layers(arch))
    model, _ = convert_fcn(arch, path, str(tmp_path / "m.keras"))
    _, layers = caffe_proto.read_caffemodel(path)
    loaded = load_checkpoint(str(tmp_path / "m.keras"))
    _assert_equal_to_blobs(loaded, layers)
    _assert_fcn_authors_preprocessing(loaded)


def test_fcn_preprocessing_mean_is_saved_and_defaults_are_unchanged(tmp_path):
    """`preprocessing_mean` (what convert_fcn sets) survives .keras; without it, Caffe's ImageNet mean."""
    assert FCN_BGR_MEAN == (104.00698793, 116.66876762, 122.67891434)
    model = segzoo.get_model("fcn8s", num_classes=3, base_filters=8, fc_channels=16,
                             preprocessing_mean=FCN_BGR_MEAN)
    path = str(tmp_path / "narrow.keras")
    model.save(path)
    loaded = load_checkpoint(path)
    assert loaded.get_config()["preprocessing_mean"] == list(FCN_BGR_MEAN)
    _assert_fcn_authors_preprocessing(loaded)
    image = np.random.default_rng(1).uniform(0, 255, (1, 40, 36, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(image).numpy(), model(image).numpy())
    # An old checkpoint's config has no preprocessing_mean: the Caffe ImageNet mean, as before.
    config = model.get_config()
    del config["preprocessing_mean"]
    old = type(model).from_config(config)
    np.testing.assert_allclose(old.get_layer("preprocess")(image).numpy(),
                               image[..., ::-1] - np.array(CAFFE_BGR_MEAN, np.float32), atol=1e-5)


def test_image_normalization_mean_std_options():
    image = np.random.default_rng(2).uniform(0, 255, (2, 3, 4, 3)).astype(np.float32)
    layer = ImageNormalization("torch", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    np.testing.assert_allclose(layer(image).numpy(), (image / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3],
                               rtol=1e-5, atol=1e-5)
    clone = ImageNormalization.from_config(layer.get_config())
    assert (clone.mean, clone.std) == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert ImageNormalization("caffe").get_config()["mean"] == list(CAFFE_BGR_MEAN)
    with pytest.raises(ValueError, match=r"`mean` must be 3 finite numbers.*\(1, 2\)"):
        ImageNormalization("caffe", mean=(1, 2))
    with pytest.raises(ValueError, match="`std` applies to mode 'torch' only"):
        ImageNormalization("caffe", std=(1, 1, 1))
    with pytest.raises(ValueError, match="`std` must be 3 positive numbers"):
        ImageNormalization("torch", std=(1, 0, 1))
