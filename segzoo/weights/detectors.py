"""torchvision's maskrcnn / keypointrcnn_resnet50_fpn state dicts -> segzoo `MaskRCNN`.

The segzoo model is built with torchvision's inference conventions
(`torchvision_detector`): ResNet-50 v1.5 (``backbone_layout="torchvision"``),
FrozenBatchNorm, ImageNet mean/std on [0, 1] RGB in the transform before the
zero padding to 32, RoIAlign ``aligned=False``, and torchvision's anchors,
RPN / NMS settings and paste-back (segzoo's defaults already). Names:

    backbone.body.*                        -> backbone (see `segzoo.weights.torchvision`)
    backbone.fpn.inner_blocks.i[.0]        -> fpn lateral_{i+2}
    backbone.fpn.layer_blocks.i[.0]        -> fpn output_{i+2}
    rpn.head.conv[.0.0], cls_logits, bbox_pred -> rpn head conv, cls_logits, bbox_pred
    roi_heads.box_head.fc6 / fc7           -> box_head fc6 / fc7
    roi_heads.box_predictor.cls_score / bbox_pred -> box_predictor (class-major deltas
                                              [K+1, 4], the same order in both)
    roi_heads.mask_head.mask_fcnN | .{N-1}.0 -> mask_head mask_fcnN
    roi_heads.mask_predictor.conv5_mask    -> mask_head conv5_mask
    roi_heads.mask_predictor.mask_fcn_logits -> mask_predictor mask_fcn_logits
    roi_heads.keypoint_head.{2i}           -> keypoint_head conv_fcn{i+1}
    roi_heads.keypoint_predictor.kps_score_lowres -> keypoint_predictor

Both the current names and the old ones of the released files (renamed by
torchvision's ``_load_from_state_dict``) are accepted. Tensor layouts: conv
``(O, I, kh, kw)`` -> ``(kh, kw, I, O)``; transposed conv ``(I, O, kh, kw)`` ->
``(kh, kw, O, I)``; linear ``(O, I)`` -> ``(I, O)``, except fc6, whose input is
the NCHW flatten ``c * 49 + y * 7 + x`` of the 256 x 7 x 7 RoI features in
torch and the NHWC flatten ``(y * 7 + x) * 256 + c`` here, so its rows are
permuted. FrozenBatchNorm: the COCO_V1 weights were trained with eps 0
(torchvision's ``overwrite_eps(model, 0.0)``); segzoo's BN keeps its eps
(1e-5) and stores ``running_var - 1e-5`` instead, so ``var' + eps = var``
exactly as torchvision divides by ``sqrt(var + 0)``.

Classes: segzoo class k = torchvision label k = COCO category id k (91 slots
with background and the 11 unused "N/A" ids), names = torchvision's.
"""

from __future__ import annotations

import os
import re

import numpy as np

from segzoo.conventions import TORCHVISION_MEAN_RGB as IMAGENET_MEAN
from segzoo.conventions import TORCHVISION_STD_RGB as IMAGENET_STD
from segzoo.errors import ArgumentError, arg
from segzoo.weights import torchvision as tv

ARCHS = ("maskrcnn_resnet50_fpn", "keypointrcnn_resnet50_fpn")
# torchvision.models.detection MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"].
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A",
    "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase", "frisbee", "skis",
    "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A",
    "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
# torchvision trains its released detectors with FrozenBatchNorm eps 0 (COCO_V1 `overwrite_eps`).
TORCHVISION_BN_EPS = 0.0


def new_names(state_dict):
    """The current torchvision key names (old released names renamed as `_load_from_state_dict`)."""
    out = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)", key)
        if match:
            key = f"backbone.fpn.{match[1]}_blocks.{match[2]}.0.{match[3]}"
        elif re.fullmatch(r"rpn\.head\.conv\.(weight|bias)", key):
            key = "rpn.head.conv.0.0." + key.rsplit(".", 1)[1]
        match = re.fullmatch(r"roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)", key)
        if match:
            key = f"roi_heads.mask_head.{int(match[1]) - 1}.0.{match[2]}"
        out[key] = value
    return out


def torchvision_detector(arch, num_classes=None, **kwargs):
    """A segzoo detector laid out and configured as torchvision's `arch` (random weights)."""
    import segzoo
    from segzoo.models.mask_rcnn.keypoint_names import COCO_PERSON_KEYPOINT_NAMES

    if arch not in ARCHS:
        raise ArgumentError(f"{arg('arch', arch)}: expected one of {', '.join(ARCHS)}")
    common = dict(backbone="resnet50", backbone_layout="torchvision", freeze_batchnorm=True,
                  trainable_layers="3+", roi_aligned=False, image_mean=IMAGENET_MEAN,
                  image_std=IMAGENET_STD, size_rounding="floor", **kwargs)
    if arch == "maskrcnn_resnet50_fpn":
        k = 90 if num_classes is None else num_classes
        names = list(COCO_CATEGORIES) if k == 90 else None
        return segzoo.get_model("mask_rcnn", num_classes=k, class_names=names,
                                category_ids=list(range(1, k + 1)), **common)
    k = 1 if num_classes is None else num_classes
    return segzoo.get_model("keypoint_rcnn", num_classes=k,
                            class_names=["__background__", "person"] if k == 1 else None,
                            category_ids=list(range(1, k + 1)), num_keypoints=17,
                            keypoint_names=list(COCO_PERSON_KEYPOINT_NAMES), **common)


def _sublayer(parent, name):
    for layer in parent._flatten_layers(include_self=False, recursive=True):
        if layer.name == name:
            return layer
    raise ValueError(f"{parent.name} has no layer {name!r}")


def _conv(state, key):
    weight = state.pop(key + ".weight")
    bias = state.pop(key + ".bias", None)
    return [tv.conv_kernel(weight)] + ([bias] if bias is not None else [])


def _deconv(state, key):
    return [tv.deconv_kernel(state.pop(key + ".weight")), state.pop(key + ".bias")]


def _dense(state, key):
    return [tv.dense_kernel(state.pop(key + ".weight")), state.pop(key + ".bias")]


def _fc6(state, key, channels, size):
    weight = state.pop(key + ".weight")
    out = weight.shape[0]
    # NCHW flatten (c, y, x) -> NHWC flatten (y, x, c)
    weight = weight.reshape(out, channels, size, size).transpose(2, 3, 1, 0).reshape(-1, out)
    return [np.ascontiguousarray(weight), state.pop(key + ".bias")]


def detector_layer_weights(model, state_dict, source="state dict", bn_eps=TORCHVISION_BN_EPS):
    """Pairs every weighted layer of `model` with its arrays from a torchvision state dict.

    Returns:
        list of (keras layer, [arrays]) covering every layer with weights.
    Raises:
        ValueError: a key is missing, left over, or a shape does not fit.
    """
    state = {k: np.asarray(v) for k, v in new_names(state_dict).items()
             if not k.endswith("num_batches_tracked")}
    pairs = []
    body, _ = tv.resnet_layer_weights({k: v for k, v in state.items()
                                       if k.startswith("backbone.body.")}, "backbone.body.")
    for key in [k for k in state if k.startswith("backbone.body.")]:
        del state[key]
    for name, arrays in body.items():
        layer = model.backbone.get_layer(name)
        if name.endswith("_bn"):
            gamma, beta, mean, var = arrays
            arrays = [gamma, beta, mean, (var + np.float32(bn_eps) - np.float32(layer.epsilon))
                      .astype(np.float32)]
        pairs.append((layer, arrays))
    for i in range(len(model.fpn.lateral_convs)):
        pairs.append((model.fpn.lateral_convs[i], _conv(state, f"backbone.fpn.inner_blocks.{i}.0")))
        pairs.append((model.fpn.output_convs[i], _conv(state, f"backbone.fpn.layer_blocks.{i}.0")))
    head = model.rpn.head
    pairs += [(head.conv, _conv(state, "rpn.head.conv.0.0")),
              (head.cls_logits, _conv(state, "rpn.head.cls_logits")),
              (head.bbox_pred, _conv(state, "rpn.head.bbox_pred"))]
    heads = model.roi_heads
    fc6 = heads.box_head.fc6
    channels = model.fpn.num_channels
    size = int(round((fc6.kernel.shape[0] // channels) ** 0.5))
    pairs += [(fc6, _fc6(state, "roi_heads.box_head.fc6", channels, size)),
              (heads.box_head.fc7, _dense(state, "roi_heads.box_head.fc7")),
              (heads.box_predictor.cls_score, _dense(state, "roi_heads.box_predictor.cls_score")),
              (heads.box_predictor.bbox_pred, _dense(state, "roi_heads.box_predictor.bbox_pred"))]
    if heads.has_masks:
        for i in range(4):
            pairs.append((_sublayer(heads.mask_head, f"mask_fcn{i + 1}"),
                          _conv(state, f"roi_heads.mask_head.{i}.0")))
        pairs += [(heads.mask_head.conv5_mask, _deconv(state, "roi_heads.mask_predictor.conv5_mask")),
                  (heads.mask_predictor.mask_fcn_logits,
                   _conv(state, "roi_heads.mask_predictor.mask_fcn_logits"))]
    if heads.has_keypoints:
        for i in range(8):
            pairs.append((_sublayer(heads.keypoint_head, f"conv_fcn{i + 1}"),
                          _conv(state, f"roi_heads.keypoint_head.{2 * i}")))
        pairs.append((heads.keypoint_predictor.kps_score_lowres,
                      _deconv(state, "roi_heads.keypoint_predictor.kps_score_lowres")))
    if state:
        raise ArgumentError(f"{source}: {len(state)} tensors have no place in {model.name} "
                            f"(e.g. {sorted(state)[:4]}); is {arg('arch')} right?")
    return pairs


def load_detector_weights(model, state_dict, source="state dict"):
    """Sets the torchvision tensors on `model` (shapes checked); returns the (layer, arrays) pairs."""
    try:
        pairs = detector_layer_weights(model, state_dict, source)
    except KeyError as error:
        raise ArgumentError(f"{source}: missing tensor {error.args[0]!r}; is {arg('arch')} right?") from None
    covered = {id(layer) for layer, _ in pairs}
    uncovered = [layer.name for layer in model._flatten_layers(include_self=False, recursive=True)
                 if layer.weights and not list(layer._flatten_layers(include_self=False))
                 and id(layer) not in covered]
    if uncovered:
        raise ValueError(f"{source}: no tensors for {uncovered[:4]} of {model.name}")
    for layer, arrays in pairs:
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise ValueError(f"{source}: {layer.name} expects {expected}, the file gives {got}")
        layer.set_weights(arrays)
    return pairs


def convert_detector(arch, weights, out=None, verbose=True):
    """torchvision `arch` file -> segzoo `.keras` (written atomically, read back and compared).

    Returns:
        (model, pairs) with pairs = [(layer, arrays set)].
    """
    from segzoo.weights.convert import state_dict_from
    from segzoo.weights.files import save_model_atomic

    source = os.fspath(weights) if isinstance(weights, (str, os.PathLike)) else "state dict"
    state = state_dict_from(weights)
    classes = state.get("roi_heads.box_predictor.cls_score.bias")
    if classes is None:
        raise ValueError(f"{source}: no roi_heads.box_predictor.cls_score; expected a torchvision "
                         f"{arch} state dict")
    model = torchvision_detector(arch, num_classes=int(classes.shape[0]) - 1)
    model(np.zeros((1, 64, 64, 3), np.float32))  # build every part
    pairs = load_detector_weights(model, state, source)
    if out is not None:
        save_model_atomic(model, out)
        from segzoo.models.base import load_checkpoint

        loaded = load_checkpoint(out)
        if len(loaded.weights) != len(model.weights):
            raise RuntimeError(f"{out}: {len(loaded.weights)} variables read back, "
                               f"{len(model.weights)} written")
        for mine, back in zip(model.weights, loaded.weights, strict=True):
            if mine.shape != back.shape or not np.array_equal(mine.numpy(), back.numpy()):
                raise RuntimeError(f"{out}: {mine.path} differs after writing")
        if verbose:
            print(f"{source}: {sum(len(a) for _, a in pairs)} tensors -> {out} ({arch}, "
                  f"{model.roi_heads.num_classes} classes)")
    return model, pairs
