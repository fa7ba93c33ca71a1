"""torchvision detectors -> segzoo: names (old and new), fc6's flatten order, FrozenBN eps 0.

The full-size output parity against torchvision runs in benchmarks/detector_parity.py
(needs torch); the full conversion of both architectures is in the slow tier here.
"""

import os

import numpy as np
import pytest

from segzoo.weights import detectors, torch_pickle
from segzoo.weights.detectors import _fc6, new_names
from tests.weights import synthetic

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "weights")


@pytest.mark.parametrize("name,arch", [("maskrcnn_keys_legacy.pth", "maskrcnn_resnet50_fpn"),
                                       ("keypointrcnn_keys_zip.pth", "keypointrcnn_resnet50_fpn")])
def test_released_old_names_map_to_torchvisions_current_ones(name, arch):
    """The fixture holds the released names in torchvision's order; key i stores i."""
    state = torch_pickle.load_state_dict(os.path.join(FIXTURES, name))
    renamed = new_names(state)
    assert list(renamed) == list(synthetic.detector_shapes(arch))  # torchvision 0.29's state_dict keys
    assert [float(v[0]) for v in renamed.values()] == list(range(len(state)))
    assert new_names(renamed) == renamed  # current names pass unchanged


def test_fc6_rows_follow_the_nhwc_flatten():
    channels, size, out = 3, 2, 5
    weight = np.random.default_rng(0).standard_normal((out, channels * size * size)).astype(np.float32)
    features = np.random.default_rng(1).standard_normal((channels, size, size)).astype(np.float32)
    torch_out = weight @ features.reshape(-1)  # torch: flatten NCHW
    kernel, _ = _fc6({"fc6.weight": weight, "fc6.bias": np.zeros(out, np.float32)}, "fc6", channels, size)
    keras_out = features.transpose(1, 2, 0).reshape(-1) @ kernel  # keras: flatten NHWC
    np.testing.assert_allclose(keras_out, torch_out, rtol=1e-5)


def _assert_pairs_equal_source(pairs, state, model):
    """Spot-checks: each layout rule on one layer of each kind."""
    new = new_names(state)
    got = {id(layer): arrays for layer, arrays in pairs}
    layer = model.rpn.head.conv
    np.testing.assert_array_equal(got[id(layer)][0], new["rpn.head.conv.0.0.weight"].transpose(2, 3, 1, 0))
    layer = model.fpn.lateral_convs[3]
    np.testing.assert_array_equal(got[id(layer)][1], new["backbone.fpn.inner_blocks.3.0.bias"])
    bn = model.backbone.get_layer("conv4_block2_2_bn")
    np.testing.assert_array_equal(bn.get_weights()[3] + np.float32(bn.epsilon),
                                  new["backbone.body.layer3.1.bn2.running_var"])
    np.testing.assert_array_equal(model.roi_heads.box_predictor.bbox_pred.get_weights()[0],
                                  new["roi_heads.box_predictor.bbox_pred.weight"].T)


@pytest.mark.slow
@pytest.mark.parametrize("arch", detectors.ARCHS)
def test_full_conversion_covers_every_tensor_and_layer(arch, tmp_path):
    from segzoo import cli
    from segzoo.models.base import load_checkpoint
    from tests.weights import writers

    state = synthetic.detector_state_dict(arch, released=True)
    path = writers.write_torch_zip(str(tmp_path / f"{arch}.pth"), state)
    out = str(tmp_path / f"{arch}.keras")
    assert cli.main(["convert", "--from", "torchvision", "--arch", arch, "--weights", path, "--out", out]) == 0
    model = load_checkpoint(out)
    if arch.startswith("mask"):
        assert model.class_names == list(detectors.COCO_CATEGORIES) and model.category_ids == list(range(1, 91))
    else:
        assert model.class_names == ["__background__", "person"] and model.has_keypoints
    pairs = detectors.detector_layer_weights(model, state)
    assert sum(len(a) for _, a in pairs) == len(state)
    for layer, arrays in pairs:
        for have, want in zip(layer.get_weights(), arrays, strict=True):
            np.testing.assert_array_equal(have, want, err_msg=layer.name)
    _assert_pairs_equal_source(pairs, state, model)
