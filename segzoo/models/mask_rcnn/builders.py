"""Registered builders: `mask_rcnn`, `ms_rcnn`, `keypoint_rcnn` turn scalar keywords into parts.

    segzoo.get_model("mask_rcnn", num_classes=3, backbone="resnet18")
    segzoo.get_model("mask_rcnn", num_classes=3, keypoints=True, mask_scoring=True)
    segzoo.get_model("ms_rcnn", num_classes=3)             # = mask_rcnn(mask_scoring=True)
    segzoo.get_model("keypoint_rcnn", num_keypoints=17)    # boxes + keypoints, no masks

Every keyword has the paper's / torchvision's default (`DEFAULTS`). A part
can be passed instead of the scalars that build it (torchvision style):
`backbone` (a keras.Model, or `backbone_model=`), `fpn`, `rpn` or its
`anchor_generator` / `rpn_head` / `proposal_generator` / `rpn_matcher` /
`rpn_sampler`, `roi_heads` or its `box_roi_pooler` / `box_head` /
`box_predictor` / `box_matcher` / `box_sampler` / `mask_roi_pooler` /
`mask_head` / `mask_predictor` / `keypoint_roi_pooler` / `keypoint_head` /
`keypoint_predictor` / `maskiou_head` / `maskiou_predictor`, and `transform`.
Passing a part together with a scalar that would configure it raises
ValueError (`CONFIGURES`): the scalar would be silently ignored.

Weight-import switches (torchvision compatibility): `backbone_layout="torchvision"`
(ResNet v1.5 layout, BN eps 1e-5), `freeze_batchnorm=True` (FrozenBN),
`roi_aligned=False` (torchvision's MultiScaleRoIAlign), and
`image_mean` / `image_std` (normalisation in the transform before padding,
as GeneralizedRCNNTransform; the backbone then does none).
"""

from __future__ import annotations

import difflib

import keras

from segzoo.registry import register_model

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
ROI_POOLERS = ("align", "warp", "pool")
BOX_LEVELS = ("P2", "P3", "P4", "P5")

DEFAULTS = {
    "num_classes": 80,
    "backbone": "resnet50", "backbone_weights": None, "backbone_layout": "keras", "freeze_batchnorm": None,
    "trainable_layers": None,
    "min_size": 800, "max_size": 1333, "image_mean": None, "image_std": None, "size_rounding": "round",
    "fpn_channels": 256,
    "anchor_sizes": (32, 64, 128, 256, 512), "aspect_ratios": (0.5, 1.0, 2.0),
    "rpn_pre_nms_top_n_train": 2000, "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_train": 2000, "rpn_post_nms_top_n_test": 1000, "rpn_nms_threshold": 0.7,
    "rpn_fg_iou_threshold": 0.7, "rpn_bg_iou_threshold": 0.3,
    "rpn_batch_size_per_image": 256, "rpn_positive_fraction": 0.5, "rpn_smooth_l1_beta": 1.0 / 9,
    "roi_pooler": "align", "roi_aligned": True,
    "box_fg_iou_threshold": 0.5, "box_bg_iou_threshold": 0.5,
    "box_batch_size_per_image": 512, "box_positive_fraction": 0.25,
    "box_weights": (10.0, 10.0, 5.0, 5.0), "box_smooth_l1_beta": 1.0,
    "box_score_threshold": 0.05, "box_nms_threshold": 0.5, "box_num_candidates": 4096, "max_detections": 100,
    "representation_size": 1024,
    "masks": True, "mask_loss": "sigmoid", "class_agnostic_masks": False, "mask_head_channels": 256,
    "mask_threshold": 0.5,
    "mask_scoring": False, "maskiou_head_channels": 256, "maskiou_representation_size": 1024,
    "keypoints": False, "num_keypoints": 17, "keypoint_head_channels": 512, "keypoint_head_layers": 8,
}
METADATA = ("class_names", "category_ids", "keypoint_names", "keypoint_skeleton", "seed", "name")

_RPN_PROPOSALS = ("rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
                  "rpn_post_nms_top_n_test", "rpn_nms_threshold")
_POOLING = ("roi_pooler", "roi_aligned")
# part -> the keywords (scalars or sub-parts) that configure it.
CONFIGURES = {
    "backbone_model": ("backbone", "backbone_weights", "backbone_layout", "freeze_batchnorm", "trainable_layers"),
    "fpn": ("fpn_channels",),
    "anchor_generator": ("anchor_sizes", "aspect_ratios"),
    "rpn_head": (),
    "proposal_generator": _RPN_PROPOSALS,
    "rpn_matcher": ("rpn_fg_iou_threshold", "rpn_bg_iou_threshold"),
    "rpn_sampler": ("rpn_batch_size_per_image", "rpn_positive_fraction"),
    "box_roi_pooler": _POOLING,
    "box_head": ("representation_size",),
    "box_predictor": ("num_classes",),
    "box_matcher": ("box_fg_iou_threshold", "box_bg_iou_threshold"),
    "box_sampler": ("box_batch_size_per_image", "box_positive_fraction"),
    "mask_roi_pooler": _POOLING,
    "mask_head": ("mask_head_channels",),
    "mask_predictor": ("num_classes", "class_agnostic_masks"),
    "maskiou_head": ("maskiou_head_channels", "maskiou_representation_size"),
    "maskiou_predictor": ("num_classes", "class_agnostic_masks"),
    "keypoint_roi_pooler": _POOLING,
    "keypoint_head": ("keypoint_head_channels", "keypoint_head_layers"),
    "keypoint_predictor": ("num_keypoints",),
    "transform": ("min_size", "max_size", "image_mean", "image_std", "size_rounding"),
}
_RPN_PARTS = ("anchor_generator", "rpn_head", "proposal_generator", "rpn_matcher", "rpn_sampler")
_ROI_PARTS = ("box_roi_pooler", "box_head", "box_predictor", "box_matcher", "box_sampler", "mask_roi_pooler",
              "mask_head", "mask_predictor", "maskiou_head", "maskiou_predictor", "keypoint_roi_pooler",
              "keypoint_head", "keypoint_predictor")
CONFIGURES["rpn"] = tuple(k for p in _RPN_PARTS for k in CONFIGURES[p]) + ("rpn_smooth_l1_beta",) + _RPN_PARTS
CONFIGURES["roi_heads"] = tuple(dict.fromkeys(
    tuple(k for p in _ROI_PARTS for k in CONFIGURES[p]) + _ROI_PARTS + (
        "box_weights", "box_smooth_l1_beta", "box_score_threshold", "box_nms_threshold", "box_num_candidates",
        "max_detections", "masks", "mask_loss", "mask_threshold", "mask_scoring", "keypoints")))
PARTS = tuple(CONFIGURES)


def _check_keywords(kwargs):
    known = set(DEFAULTS) | set(METADATA) | set(PARTS)
    for key in kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown Mask R-CNN argument {key!r}{hint}")
    for part, keys in CONFIGURES.items():
        if kwargs.get(part) is None:
            continue
        clash = [key for key in keys if key in kwargs]
        if clash:
            raise ValueError(f"{part} was passed as a part, so {', '.join(clash)} would be ignored: pass "
                             f"either the part or the arguments that build it, not both")


def _backbone(opt):
    from segzoo.models.backbones import resnet

    name = opt["backbone"]
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES} (or a keras.Model), got {name!r}")
    pretrained = opt["backbone_weights"] is not None
    freeze = pretrained if opt["freeze_batchnorm"] is None else bool(opt["freeze_batchnorm"])
    stages = opt["trainable_layers"] or ("3+" if pretrained else "all")
    extra = {"preprocessing": None} if opt["image_mean"] is not None else {}
    return resnet.resnet_backbone(int(name[len("resnet"):]), opt["backbone_weights"],
                                  layout=opt["backbone_layout"], freeze_batchnorm=freeze,
                                  trainable_stages=stages, name=name, **extra)


def _pooler(opt, size, name):
    from segzoo.blocks.roi_layers import MultiLevelRoIPooler

    if opt["roi_pooler"] not in ROI_POOLERS:
        raise ValueError(f"roi_pooler must be one of {ROI_POOLERS}, got {opt['roi_pooler']!r}")
    return MultiLevelRoIPooler(size, BOX_LEVELS, opt["roi_pooler"], sampling_ratio=2,
                               aligned=bool(opt["roi_aligned"]), name=name)


def build_detector(kwargs, variant=None):
    """`MaskRCNN` from builder keywords (module docstring); `variant`: the registered name's defaults."""
    from segzoo.blocks.fpn import FeaturePyramid
    from segzoo.models.mask_rcnn.anchors import AnchorGenerator
    from segzoo.models.mask_rcnn.box_head import BoxPredictor, TwoMLPHead
    from segzoo.models.mask_rcnn.keypoint_head import KeypointHead, KeypointPredictor
    from segzoo.models.mask_rcnn.mask_head import MaskHead, MaskPredictor
    from segzoo.models.mask_rcnn.maskiou_head import MaskIoUHead, MaskIoUPredictor
    from segzoo.models.mask_rcnn.matcher import Matcher
    from segzoo.models.mask_rcnn.model import MaskRCNN
    from segzoo.models.mask_rcnn.roi_heads import RoIHeads
    from segzoo.models.mask_rcnn.rpn import ProposalGenerator, RegionProposalNetwork, RPNHead
    from segzoo.models.mask_rcnn.sampler import BalancedPositiveNegativeSampler
    from segzoo.models.mask_rcnn.transform import DetectionTransform

    kwargs = dict(kwargs)
    if isinstance(kwargs.get("backbone"), keras.Model):
        if kwargs.get("backbone_model") is not None:
            raise ValueError("pass the backbone once: backbone=<keras.Model> or backbone_model=, not both")
        kwargs["backbone_model"] = kwargs.pop("backbone")
    kwargs = {k: v for k, v in kwargs.items() if not (k in PARTS and v is None)}
    _check_keywords(kwargs)
    opt = {**DEFAULTS, **(variant or {}), **kwargs}
    part = {name: kwargs.get(name) for name in PARTS}
    if "num_classes" not in kwargs:
        for source in ("roi_heads", "box_predictor"):
            if part[source] is not None:
                opt["num_classes"] = part[source].num_classes
                break
    num_classes = int(opt["num_classes"])
    if num_classes < 1:
        raise ValueError(f"num_classes (foreground classes K) must be >= 1, got {opt['num_classes']}")
    if opt["mask_scoring"] and not opt["masks"]:
        raise ValueError("mask_scoring=True scores masks: it needs masks=True")
    if opt["mask_loss"] not in ("sigmoid", "softmax"):
        raise ValueError(f"mask_loss must be 'sigmoid' or 'softmax', got {opt['mask_loss']!r}")
    if opt["mask_loss"] == "softmax" and opt["class_agnostic_masks"]:
        raise ValueError("mask_loss='softmax' needs one channel per class; it cannot be combined "
                         "with class_agnostic_masks=True")

    # === Parts === (built in this order: it fixes the default initialisers' seeds)
    backbone = part["backbone_model"] or _backbone(opt)
    fpn = part["fpn"] or FeaturePyramid(int(opt["fpn_channels"]), extra_pool_level=True, name="fpn")
    rpn = part["rpn"]
    if rpn is None:
        anchors = part["anchor_generator"] or AnchorGenerator(
            sizes=[(int(s),) for s in opt["anchor_sizes"]], aspect_ratios=[tuple(opt["aspect_ratios"])])
        rpn = RegionProposalNetwork(
            anchors,
            part["rpn_head"] or RPNHead(anchors.num_anchors_per_location()[0], fpn.num_channels, name="rpn_head"),
            part["proposal_generator"] or ProposalGenerator(*(opt[k] for k in _RPN_PROPOSALS)),
            part["rpn_matcher"] or Matcher(opt["rpn_fg_iou_threshold"], opt["rpn_bg_iou_threshold"],
                                           allow_low_quality_matches=True),
            part["rpn_sampler"] or BalancedPositiveNegativeSampler(opt["rpn_batch_size_per_image"],
                                                                   opt["rpn_positive_fraction"]),
            smooth_l1_beta=opt["rpn_smooth_l1_beta"], name="rpn")
    heads = part["roi_heads"]
    if heads is None:
        agnostic = bool(opt["class_agnostic_masks"])
        box_roi_pool = part["box_roi_pooler"] or _pooler(opt, 7, "box_roi_pool")
        box_head = part["box_head"] or TwoMLPHead(int(opt["representation_size"]), name="box_head")
        box_predictor = part["box_predictor"] or BoxPredictor(num_classes, name="box_predictor")
        branches = {}
        if opt["masks"]:
            mask_channels = int(opt["mask_head_channels"])
            branches.update(
                mask_roi_pool=part["mask_roi_pooler"] or _pooler(opt, 14, "mask_roi_pool"),
                mask_head=part["mask_head"] or MaskHead((mask_channels,) * 4, mask_channels, name="mask_head"),
                mask_predictor=part["mask_predictor"] or MaskPredictor(num_classes, class_agnostic=agnostic,
                                                                       name="mask_predictor"))
        if opt["keypoints"]:
            widths = (int(opt["keypoint_head_channels"]),) * int(opt["keypoint_head_layers"])
            branches.update(
                keypoint_roi_pool=part["keypoint_roi_pooler"] or _pooler(opt, 14, "keypoint_roi_pool"),
                keypoint_head=part["keypoint_head"] or KeypointHead(widths, name="keypoint_head"),
                keypoint_predictor=part["keypoint_predictor"] or KeypointPredictor(
                    int(opt["num_keypoints"]), name="keypoint_predictor"))
        if opt["mask_scoring"]:
            branches.update(
                maskiou_head=part["maskiou_head"] or MaskIoUHead(
                    (int(opt["maskiou_head_channels"]),) * 4, int(opt["maskiou_representation_size"]),
                    name="maskiou_head"),
                maskiou_predictor=part["maskiou_predictor"] or MaskIoUPredictor(
                    num_classes, class_agnostic=agnostic, name="maskiou_predictor"))
        heads = RoIHeads(
            box_roi_pool, box_head, box_predictor,
            part["box_matcher"] or Matcher(opt["box_fg_iou_threshold"], opt["box_bg_iou_threshold"],
                                           allow_low_quality_matches=False),
            part["box_sampler"] or BalancedPositiveNegativeSampler(opt["box_batch_size_per_image"],
                                                                   opt["box_positive_fraction"]),
            box_weights=opt["box_weights"], box_smooth_l1_beta=opt["box_smooth_l1_beta"],
            score_threshold=opt["box_score_threshold"], nms_threshold=opt["box_nms_threshold"],
            detections_per_image=opt["max_detections"], num_candidates=opt["box_num_candidates"],
            mask_loss=opt["mask_loss"], mask_threshold=opt["mask_threshold"], name="roi_heads", **branches)
    transform = part["transform"] or DetectionTransform(
        opt["min_size"], opt["max_size"], image_mean=opt["image_mean"], image_std=opt["image_std"],
        size_rounding=opt["size_rounding"], name="transform")
    meta = {key: opt[key] for key in METADATA if key in opt}
    return MaskRCNN(backbone, fpn, rpn, heads, transform, **meta)


@register_model(
    "mask_rcnn", task="instance",
    description="Mask R-CNN, ResNet-FPN (He et al. 2017); instance segmentation",
    default_kwargs={"num_classes": 3, "backbone": "resnet18"},
)
def mask_rcnn(**kwargs):
    """Mask R-CNN (`keypoints=True` adds the keypoint branch, `mask_scoring=True` the MaskIoU head)."""
    return build_detector(kwargs)


@register_model(
    "ms_rcnn", task="instance",
    description="Mask Scoring R-CNN (Huang et al. 2019): Mask R-CNN + MaskIoU head rescoring masks",
    default_kwargs={"num_classes": 3, "backbone": "resnet18"},
)
def ms_rcnn(**kwargs):
    """Mask R-CNN with `mask_scoring=True`: outputs add `mask_scores` = score x predicted MaskIoU."""
    return build_detector(kwargs, variant={"mask_scoring": True})


@register_model(
    "keypoint_rcnn", task="instance",
    description="Keypoint R-CNN, ResNet-FPN (torchvision's keypointrcnn): boxes + K keypoints per instance",
    default_kwargs={"num_classes": 1, "backbone": "resnet18", "num_keypoints": 17},
)
def keypoint_rcnn(**kwargs):
    """Keypoint R-CNN (`num_keypoints=17`, one class by default; no mask branch unless `masks=True`)."""
    return build_detector(kwargs, variant={"keypoints": True, "masks": False, "num_classes": 1})
