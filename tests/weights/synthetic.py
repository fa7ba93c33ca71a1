"""torchvision state dicts as numpy, generated from a seed: keys, shapes and values.

Pure numpy (no torch, no segzoo), so the fixture generator (bench env), the
tests and the parity benchmark build the same dicts. Key names and shapes are
torchvision's current ones (``state_dict()`` of torchvision 0.29); the fixture
generator checks them against torchvision itself. `released_names` turns them
into the old names that the released 2019 detector files use.

Values are "alive": He-scaled convolutions, batch-norm statistics near
(0, 1), so activations keep their scale through 100 layers, and a detector
made from them finds boxes (see `detector_state_dict`).
"""

from __future__ import annotations

import zlib

import numpy as np

RESNET_BLOCKS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                 50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


def resnet_shapes(depth, prefix="", frozen_bn=False, fc=True):
    """Ordered ``{key: shape}`` of torchvision's resnet{depth} (``prefix`` before each key)."""
    kind, blocks = RESNET_BLOCKS[depth]
    shapes = {}

    def bn(name, channels):
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}{name}.{suffix}"] = (channels,)
        if not frozen_bn:
            shapes[f"{prefix}{name}.num_batches_tracked"] = ()

    shapes[f"{prefix}conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    expansion = 4 if kind == "bottleneck" else 1
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), 1):
        for b in range(count):
            name = f"layer{stage}.{b}"
            stride = 2 if b == 0 and stage > 1 else 1
            if kind == "basic":
                shapes[f"{prefix}{name}.conv1.weight"] = (planes, inplanes, 3, 3)
                bn(f"{name}.bn1", planes)
                shapes[f"{prefix}{name}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{name}.bn2", planes)
            else:
                shapes[f"{prefix}{name}.conv1.weight"] = (planes, inplanes, 1, 1)
                bn(f"{name}.bn1", planes)
                shapes[f"{prefix}{name}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{name}.bn2", planes)
                shapes[f"{prefix}{name}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{name}.bn3", planes * 4)
            if b == 0 and (stride != 1 or inplanes != planes * expansion):
                shapes[f"{prefix}{name}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{name}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    if fc:
        shapes[f"{prefix}fc.weight"] = (1000, 512 * expansion)
        shapes[f"{prefix}fc.bias"] = (1000,)
    return shapes


def detector_shapes(arch="maskrcnn_resnet50_fpn", num_classes=91, num_keypoints=17):
    """Ordered ``{key: shape}`` of torchvision's maskrcnn/keypointrcnn_resnet50_fpn state dict."""
    shapes = resnet_shapes(50, "backbone.body.", frozen_bn=True, fc=False)
    for block in ("inner_blocks", "layer_blocks"):
        for i, channels in enumerate((256, 512, 1024, 2048)):
            kernel = (256, channels, 1, 1) if block == "inner_blocks" else (256, 256, 3, 3)
            shapes[f"backbone.fpn.{block}.{i}.0.weight"] = kernel
            shapes[f"backbone.fpn.{block}.{i}.0.bias"] = (256,)
    # state_dict() lists inner_blocks then layer_blocks
    shapes["rpn.head.conv.0.0.weight"] = (256, 256, 3, 3)
    shapes["rpn.head.conv.0.0.bias"] = (256,)
    shapes["rpn.head.cls_logits.weight"] = (3, 256, 1, 1)
    shapes["rpn.head.cls_logits.bias"] = (3,)
    shapes["rpn.head.bbox_pred.weight"] = (12, 256, 1, 1)
    shapes["rpn.head.bbox_pred.bias"] = (12,)
    keypoints = arch.startswith("keypoint")
    classes = 2 if keypoints else num_classes
    shapes["roi_heads.box_head.fc6.weight"] = (1024, 256 * 7 * 7)
    shapes["roi_heads.box_head.fc6.bias"] = (1024,)
    shapes["roi_heads.box_head.fc7.weight"] = (1024, 1024)
    shapes["roi_heads.box_head.fc7.bias"] = (1024,)
    shapes["roi_heads.box_predictor.cls_score.weight"] = (classes, 1024)
    shapes["roi_heads.box_predictor.cls_score.bias"] = (classes,)
    shapes["roi_heads.box_predictor.bbox_pred.weight"] = (4 * classes, 1024)
    shapes["roi_heads.box_predictor.bbox_pred.bias"] = (4 * classes,)
    if keypoints:
        channels = 256
        for i in range(8):
            shapes[f"roi_heads.keypoint_head.{2 * i}.weight"] = (512, channels, 3, 3)
            shapes[f"roi_heads.keypoint_head.{2 * i}.bias"] = (512,)
            channels = 512
        shapes["roi_heads.keypoint_predictor.kps_score_lowres.weight"] = (512, num_keypoints, 4, 4)
        shapes["roi_heads.keypoint_predictor.kps_score_lowres.bias"] = (num_keypoints,)
    else:
        for i in range(4):
            shapes[f"roi_heads.mask_head.{i}.0.weight"] = (256, 256, 3, 3)
            shapes[f"roi_heads.mask_head.{i}.0.bias"] = (256,)
        shapes["roi_heads.mask_predictor.conv5_mask.weight"] = (256, 256, 2, 2)
        shapes["roi_heads.mask_predictor.conv5_mask.bias"] = (256,)
        shapes["roi_heads.mask_predictor.mask_fcn_logits.weight"] = (num_classes, 256, 1, 1)
        shapes["roi_heads.mask_predictor.mask_fcn_logits.bias"] = (num_classes,)
    return shapes


def released_names(state_dict):
    """Renames current torchvision keys to the old ones of the 2019 releases.

    ``fpn.{inner,layer}_blocks.i.0.* -> fpn.{inner,layer}_blocks.i.*``,
    ``rpn.head.conv.0.0.* -> rpn.head.conv.*``, ``mask_head.i.0.* -> mask_head.mask_fcn{i+1}.*``
    (the inverse of torchvision's ``_load_from_state_dict`` renames).
    """
    out = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if key.startswith("backbone.fpn.") and len(parts) == 6:
            key = ".".join(parts[:4] + parts[5:])
        elif key.startswith("rpn.head.conv.0.0."):
            key = "rpn.head.conv." + parts[-1]
        elif key.startswith("roi_heads.mask_head.") and len(parts) == 5:
            key = f"roi_heads.mask_head.mask_fcn{int(parts[2]) + 1}.{parts[-1]}"
        out[key] = value
    return out


def _rng(seed, key):
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def alive_value(key, shape, seed=0):
    """One tensor: float32 of `shape` (int64 for num_batches_tracked), from (seed, key)."""
    rng = _rng(seed, key)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.array(1000, np.int64)
    if leaf == "running_mean":
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    if leaf == "running_var":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    is_bn = ".bn" in key or "downsample.1" in key or key.startswith(("bn1", "backbone.body.bn1"))
    if is_bn and leaf == "weight":
        return rng.uniform(0.5, 1.0, shape).astype(np.float32)
    if leaf == "bias":
        return rng.normal(0.0, 0.05, shape).astype(np.float32)
    if "kps_score_lowres" in key or "conv5_mask" in key:  # ConvTranspose (I, O, kh, kw)
        fan_in = shape[0] * shape[2] * shape[3] / 4.0
    else:
        fan_in = float(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def resnet_state_dict(depth, seed=0):
    """A torchvision resnet{depth} state dict as ``{key: np.ndarray}``."""
    return {k: alive_value(k, s, seed) for k, s in resnet_shapes(depth).items()}


# Classifier scaling per detector (see `detector_state_dict`): (cls_scale, foreground logit offset).
CLASSIFIER_SCALING = {"maskrcnn_resnet50_fpn": (0.11, 0.0), "keypointrcnn_resnet50_fpn": (0.25, -1.0)}


def detector_state_dict(arch="maskrcnn_resnet50_fpn", seed=0, released=True, cls_scale=None,
                        cls_offset=None, rpn_cls_scale=0.1):
    """A maskrcnn/keypointrcnn_resnet50_fpn state dict (old key names when `released`).

    The classifier rows are centred (each row of ``cls_score.weight`` minus its
    mean): the fc7 features are ReLU outputs with a large common component
    whose size changes from photo to photo, and uncentred random rows turn it
    into a per-photo shift of every class logit (one photo all background,
    the next all foreground). Then they are scaled by `cls_scale` and
    `cls_offset` is added to the foreground biases (defaults per arch,
    `CLASSIFIER_SCALING`: Mask R-CNN x 0.11; Keypoint R-CNN x 0.25 and -1) so
    that every photo of `benchmarks/detector_parity.py` has detections with
    score >= 0.3 with a spread of scores (with 5 skimage photos and seed 0:
    from ~10 to the 100-detection cap per photo). Box deltas are damped
    (x 0.1). The RPN objectness conv is damped by `rpn_cls_scale` (x 0.1):
    undamped, the random FPN levels (std ~12) give objectness logits of
    17..83, sigmoid is exactly 1.0 in float32 for every top candidate, and
    torchvision's proposal ranking (on float32 probabilities) becomes an
    arbitrary sort of ties, so no other implementation can reproduce its
    proposals. Damped, the top logits are ~2..8 and the ranking is well defined.
    """
    default_scale, default_offset = CLASSIFIER_SCALING[arch]
    cls_scale = default_scale if cls_scale is None else cls_scale
    cls_offset = default_offset if cls_offset is None else cls_offset
    state = {}
    for key, shape in detector_shapes(arch).items():
        value = alive_value(key, shape, seed)
        if key == "roi_heads.box_predictor.cls_score.weight":
            value = ((value - value.mean(axis=1, keepdims=True)) * cls_scale).astype(np.float32)
        elif key == "roi_heads.box_predictor.cls_score.bias":
            value = (value + np.float32(cls_offset) * (np.arange(len(value)) > 0)).astype(np.float32)
        elif key == "roi_heads.box_predictor.bbox_pred.weight":
            value = value * 0.1
        elif key == "rpn.head.bbox_pred.weight":
            value = value * 0.1
        elif key in ("rpn.head.cls_logits.weight", "rpn.head.cls_logits.bias"):
            value = value * rpn_cls_scale
        state[key] = value
    return released_names(state) if released else state
