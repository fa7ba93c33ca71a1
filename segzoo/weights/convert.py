"""`segzoo.weights.convert`: published checkpoints -> segzoo files (what `segzoo convert` runs).

    segzoo.weights.convert("torchvision", "resnet50", "resnet50-0676ba61.pth",
                           "resnet50_imagenet.weights.h5")
    segzoo.weights.convert("caffe", "fcn8s", "fcn8s-heavy-pascal.caffemodel", "fcn8s_voc.keras")
    segzoo.weights.convert("torchvision", "maskrcnn_resnet50_fpn",
                           "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth", "mask_rcnn_r50_coco.keras")

ResNets become a ``.weights.h5`` of `ResNetBackbone(depth, layout="torchvision")`
(load it with ``backbone_weights=PATH`` and ``backbone_layout="torchvision"``);
FCNs and detectors become segzoo ``.keras`` checkpoints that `eval`, `predict`,
`export` and ``--init-from`` take, loading with ``safe_mode=True``. Every
conversion re-reads what it wrote and checks it equals the source tensors.
"""

from __future__ import annotations

import os

import numpy as np

from segzoo.errors import ArgumentError, MissingFileError, arg
from segzoo.weights import caffe, torchvision
from segzoo.weights.torch_pickle import load_state_dict

DETECTOR_ARCHS = ("maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn")
RESNET_ARCHS = tuple(f"resnet{d}" for d in torchvision.RESNET_DEPTHS)
ARCHS = {"torchvision": RESNET_ARCHS + DETECTOR_ARCHS, "caffe": caffe.FCN_ARCHS}


def _check_equal(model, arrays, source):
    """Every layer of `model` named in `arrays` holds exactly those arrays."""
    for layer in model.layers:
        if layer.name in arrays:
            for have, want in zip(layer.get_weights(), arrays[layer.name], strict=True):
                if have.shape != want.shape or not np.array_equal(have, want):
                    raise RuntimeError(f"{source}: {layer.name} differs after writing")


def state_dict_from(weights):
    """A state dict from a path (torch file) or a dict of arrays (passed through)."""
    if isinstance(weights, dict):
        return weights
    state = load_state_dict(weights)
    for key in ("model", "state_dict"):  # training checkpoints nest the weights
        if isinstance(state.get(key), dict) and not any(isinstance(v, np.ndarray) for v in state.values()):
            state = state[key]
    bad = [k for k, v in state.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ValueError(f"{weights}: entries {bad[:3]} are not tensors; expected a state_dict")
    return state


def convert_resnet(arch, weights, out=None, verbose=True):
    """torchvision resnet{18,34,50,101} -> `ResNetBackbone(layout="torchvision")`.

    Args:
        arch: "resnet18" | "resnet34" | "resnet50" | "resnet101".
        weights: path to the torchvision ``.pth`` (or a state dict of arrays).
        out: optional ``.weights.h5`` path, written atomically, read back and checked.
    Returns:
        (backbone, {layer name: [arrays]}).
    """
    from segzoo.models.backbones.resnet import ResNetBackbone, load_resnet_weights
    from segzoo.weights.files import save_weights_atomic

    depth = int(arch[len("resnet"):])
    source = weights if isinstance(weights, (str, os.PathLike)) else "state dict"
    state = state_dict_from(weights)
    found = torchvision.infer_resnet_depth(state)
    if found != depth:
        raise ArgumentError(f"{source}: the state dict is a ResNet-{found or '?'} "
                            f"(block counts), not {arg('arch', arch)}")
    layers, _ = torchvision.resnet_layer_weights(state)
    backbone = ResNetBackbone(depth=depth, layout="torchvision")
    torchvision.assign_layers(backbone, layers, source)
    if out is not None:
        save_weights_atomic(backbone, out)
        check = ResNetBackbone(depth=depth, layout="torchvision")
        load_resnet_weights(check, out)
        _check_equal(check, layers, out)
        if verbose:
            print(f"{source}: {len(layers)} layers -> {out} (ResNet-{depth}, torchvision layout; "
                  "load with backbone_weights=PATH, backbone_layout='torchvision')")
    return backbone, layers


def convert(source, arch, weights, out, verbose=True):
    """Converts `weights` (a file of `source`'s format) for segzoo `arch`; returns `out`.

    Args:
        source: "torchvision" or "caffe".
        arch: torchvision: resnet18/34/50/101, maskrcnn_resnet50_fpn,
            keypointrcnn_resnet50_fpn; caffe: fcn32s, fcn16s, fcn8s.
        weights: the published file (``.pth`` / ``.caffemodel``).
        out: ``.weights.h5`` for ResNets, ``.keras`` for the others.
    Raises:
        ValueError: unknown source/arch, wrong extension, or a file that does not fit.
        FileNotFoundError: `weights` does not exist.
    """
    if source not in ARCHS:
        raise ArgumentError(f"{arg('source', source)}: expected one of {', '.join(ARCHS)}")
    if arch not in ARCHS[source]:
        raise ArgumentError(f"{arg('arch', arch)} for {arg('source', source)}: expected one of "
                            f"{', '.join(ARCHS[source])}")
    weights = os.fspath(weights)
    if not os.path.isfile(weights):
        raise MissingFileError(f"{arg('weights', weights)} does not exist")
    suffix = ".weights.h5" if arch in RESNET_ARCHS else ".keras"
    if not str(out).endswith(suffix):
        raise ArgumentError(f"{arg('out', out)}: {arg('arch', arch)} is written as a {suffix} file")
    if source == "caffe":
        model, arrays = caffe.convert_fcn(arch, weights, out, verbose=verbose)
        from segzoo.models.base import load_checkpoint

        _check_equal(load_checkpoint(out), arrays, out)
    elif arch in RESNET_ARCHS:
        convert_resnet(arch, weights, out, verbose=verbose)
    else:
        from segzoo.weights import detectors

        detectors.convert_detector(arch, weights, out, verbose=verbose)
    return os.path.abspath(out)
