"""torchvision ResNet -> segzoo backbone: layer-by-layer equality and torchvision's forward."""

import os

import numpy as np
import pytest

from segzoo import cli
from segzoo.models.backbones.resnet import resnet_backbone
from segzoo.weights import convert
from segzoo.weights.convert import convert_resnet
from tests.weights import synthetic, writers

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "weights")


def _assert_layers_equal(backbone, state):
    """Every segzoo layer holds exactly the torchvision tensors, transposed."""
    checked = 0
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module.startswith("fc") or leaf == "num_batches_tracked":
            continue
        parts = module.split(".")
        if module in ("conv1", "bn1"):
            name = {"conv1": "conv1_conv", "bn1": "conv1_bn"}[module]
        elif parts[2] == "downsample":
            name = f"conv{int(parts[0][5:]) + 1}_block{int(parts[1]) + 1}_0_" + (
                "conv" if parts[3] == "0" else "bn")
        else:
            kind = "conv" if parts[2].startswith("conv") else "bn"
            name = f"conv{int(parts[0][5:]) + 1}_block{int(parts[1]) + 1}_{parts[2][len(kind):]}_{kind}"
        weights = backbone.get_layer(name).get_weights()
        if name.endswith("_conv"):
            np.testing.assert_array_equal(weights[0], np.transpose(value, (2, 3, 1, 0)), err_msg=key)
            assert len(weights) == 1  # torchvision layout: no conv bias
        else:
            index = ("weight", "bias", "running_mean", "running_var").index(leaf)
            np.testing.assert_array_equal(weights[index], value, err_msg=key)
        checked += 1
    return checked


def test_cli_converts_a_torchvision_resnet18_file(tmp_path):
    state = synthetic.resnet_state_dict(18)
    pth = writers.write_torch_zip(str(tmp_path / "resnet18-f37072fd.pth"), state)
    out = str(tmp_path / "resnet18_imagenet.weights.h5")
    assert cli.main(["convert", "--from", "torchvision", "--arch", "resnet18",
                     "--weights", pth, "--out", out]) == 0
    backbone = resnet_backbone(18, weights=out, layout="torchvision")
    assert _assert_layers_equal(backbone, state) == 100  # 20 convs + 20 BNs x 4 tensors
    reference = np.load(os.path.join(FIXTURES, "resnet18_forward.npz"))
    outputs = backbone(reference["image"])
    for level in ("C3", "C5"):
        ours = np.transpose(outputs[level].numpy(), (0, 3, 1, 2))
        np.testing.assert_allclose(ours, reference[level], rtol=1e-4, atol=1e-4 * np.abs(reference[level]).max())


@pytest.mark.slow  # ~15 s quiet, more on a shared machine; ResNet-18 above covers the default tier
def test_resnet50_bottlenecks_match_torchvision():
    state = synthetic.resnet_state_dict(50)
    backbone, _ = convert_resnet("resnet50", state)
    assert _assert_layers_equal(backbone, state) == 53 + 53 * 4
    reference = np.load(os.path.join(FIXTURES, "resnet50_forward.npz"))
    ours = np.transpose(backbone(reference["image"])["C5"].numpy(), (0, 3, 1, 2))
    np.testing.assert_allclose(ours, reference["C5"], rtol=1e-4, atol=1e-4 * np.abs(reference["C5"]).max())


def test_wrong_arch_and_wrong_output_are_one_line_errors(tmp_path, capsys):
    pth = writers.write_torch_zip(str(tmp_path / "r18.pth"), synthetic.resnet_state_dict(18))
    assert cli.main(["convert", "--from", "torchvision", "--arch", "resnet34", "--weights", pth,
                     "--out", str(tmp_path / "x.weights.h5")]) == 2
    err = capsys.readouterr().err  # the library names `arch`; the CLI says the flag
    assert "the state dict is a ResNet-18 (block counts), not --arch resnet34" in err
    assert cli.main(["convert", "--from", "torchvision", "--arch", "resnet152", "--weights", pth,
                     "--out", str(tmp_path / "x.weights.h5")]) == 2
    assert "error: --arch resnet152 for --from torchvision: expected one of" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        convert("torchvision", "resnet18", pth, str(tmp_path / "x.keras"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        convert("torchvision", "resnet18", str(tmp_path / "missing.pth"), str(tmp_path / "x.weights.h5"))
    with pytest.raises(ValueError, match="arch='resnet152'"):
        convert("torchvision", "resnet152", pth, str(tmp_path / "x.weights.h5"))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".h5")]  # nothing half-written


@pytest.mark.slow
@pytest.mark.parametrize("depth", [34, 101])
def test_resnet34_and_101_layer_equality(depth, tmp_path):
    state = synthetic.resnet_state_dict(depth)
    pth = writers.write_torch_zip(str(tmp_path / "r.pth"), state)
    out = convert("torchvision", f"resnet{depth}", pth, str(tmp_path / "r.weights.h5"))
    _assert_layers_equal(resnet_backbone(depth, weights=out, layout="torchvision"), state)
