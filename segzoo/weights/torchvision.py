"""torchvision state dicts -> segzoo layers: ResNet backbones (and the detectors' backbones).

Names (torchvision -> segzoo `ResNetBackbone`, layout "torchvision"):

    conv1                      -> conv1_conv        bn1 -> conv1_bn
    layer{s}.{b}.conv{i}       -> conv{s+1}_block{b+1}_{i}_conv
    layer{s}.{b}.bn{i}         -> conv{s+1}_block{b+1}_{i}_bn
    layer{s}.{b}.downsample.0  -> conv{s+1}_block{b+1}_0_conv   (.1 -> _0_bn)

Tensors: a torch conv kernel ``(O, I, kh, kw)`` becomes Keras' ``(kh, kw, I, O)``;
batch norm ``weight, bias, running_mean, running_var`` become ``gamma, beta,
moving_mean, moving_variance`` (``num_batches_tracked`` is dropped; so is the
classifier ``fc``, which a backbone has no use for).
"""

from __future__ import annotations

import re

import numpy as np

RESNET_DEPTHS = (18, 34, 50, 101)
_BN_PARTS = ("weight", "bias", "running_mean", "running_var")


def conv_kernel(weight):
    """torch Conv2d weight (O, I, kh, kw) -> Keras Conv2D kernel (kh, kw, I, O)."""
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def deconv_kernel(weight):
    """torch ConvTranspose2d weight (I, O, kh, kw) -> Keras Conv2DTranspose kernel (kh, kw, O, I).

    Both frameworks scatter input (i) through kernel tap (y, x) to output
    ``i * stride + (y, x)``, so only the axes move (no spatial flip).
    """
    return np.ascontiguousarray(np.transpose(weight, (2, 3, 1, 0)))


def dense_kernel(weight):
    """torch Linear weight (O, I) -> Keras Dense kernel (I, O)."""
    return np.ascontiguousarray(np.transpose(weight))


def _segzoo_name(torch_name):
    """``layer2.0.downsample.1`` -> ``conv3_block1_0_bn``; None for names outside the body."""
    if torch_name == "conv1":
        return "conv1_conv"
    if torch_name == "bn1":
        return "conv1_bn"
    parts = torch_name.split(".")
    if len(parts) < 3 or not parts[0].startswith("layer") or not parts[1].isdigit():
        return None
    stage, block = int(parts[0][5:]) + 1, int(parts[1]) + 1
    prefix = f"conv{stage}_block{block}"
    if parts[2] == "downsample" and len(parts) == 4:
        return f"{prefix}_0_{'conv' if parts[3] == '0' else 'bn'}"
    match = re.fullmatch(r"(conv|bn)(\d)", parts[2]) if len(parts) == 3 else None
    return f"{prefix}_{match[2]}_{match[1]}" if match else None


def resnet_layer_weights(state_dict, prefix=""):
    """Groups a torchvision ResNet state dict into segzoo layer weights.

    Args:
        state_dict: ``{key: np.ndarray}``; keys ``{prefix}conv1.weight``, ...
        prefix: "" for a classification ResNet, "backbone.body." inside a detector.
    Returns:
        (``{segzoo layer name: [arrays in Keras order]}``, list of keys not used).
    Raises:
        ValueError: a batch-norm layer lacks one of its four tensors.
    """
    groups, unused = {}, []
    for key, value in state_dict.items():
        if not key.startswith(prefix):
            continue
        module, _, leaf = key[len(prefix):].rpartition(".")
        name = _segzoo_name(module)
        if name is None or leaf == "num_batches_tracked":
            unused.append(key)
            continue
        groups.setdefault(name, {})[leaf] = np.asarray(value, np.float32)
    layers = {}
    for name, tensors in groups.items():
        if name.endswith("_conv"):
            if set(tensors) - {"weight", "bias"} or "weight" not in tensors:
                raise ValueError(f"conv {name}: unexpected tensors {sorted(tensors)}")
            layers[name] = [conv_kernel(tensors["weight"])] + (
                [tensors["bias"]] if "bias" in tensors else [])
        else:
            missing = [p for p in _BN_PARTS if p not in tensors]
            if missing:
                raise ValueError(f"batch norm {name} lacks {missing} in the state dict")
            layers[name] = [tensors[p] for p in _BN_PARTS]
    return layers, unused


def infer_resnet_depth(state_dict, prefix=""):
    """18, 34, 50 or 101 from the block counts (and block type) of a ResNet state dict."""
    counts = []
    for stage in range(1, 5):
        blocks = {k[len(prefix):].split(".")[1] for k in state_dict
                  if k.startswith(f"{prefix}layer{stage}.")}
        counts.append(len(blocks))
    bottleneck = any(k.startswith(f"{prefix}layer1.0.conv3.") for k in state_dict)
    table = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34,
             (True, (3, 4, 6, 3)): 50, (True, (3, 4, 23, 3)): 101}
    return table.get((bottleneck, tuple(counts)))


def assign_layers(model, layers, source, strict=True):
    """Sets `layers` (name -> arrays) on `model`'s layers of the same name, shapes checked.

    Returns the names set. Raises ValueError naming `source` when a layer of
    `model` with weights has no entry (strict) or the shapes differ.
    """
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    missing = [name for name in targets if name not in layers]
    if strict and missing:
        raise ValueError(f"{source}: no tensors for {len(missing)} layers (e.g. {missing[:4]}); "
                         "is it the right architecture?")
    unknown = [name for name in layers if name not in targets]
    if unknown:
        raise ValueError(f"{source}: tensors for layers the model lacks: {unknown[:4]}")
    for name, arrays in layers.items():
        expected = [tuple(w.shape) for w in targets[name].weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"{source}: layer {name} expects shapes {expected}, "
                             f"the file gives {got}")
        targets[name].set_weights(arrays)
    return list(layers)
