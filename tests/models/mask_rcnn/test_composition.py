"""The detector is composed of parts: builders turn scalars into parts, parts are held and serialised,
a part together with the scalars that would configure it is an error."""

import numpy as np
import pytest

import segzoo
from segzoo.blocks import FeaturePyramid, MultiLevelRoIPooler
from segzoo.models.mask_rcnn import DetectionTransform, MaskRCNN, RegionProposalNetwork, RoIHeads
from segzoo.models.mask_rcnn.box_head import BoxPredictor
from segzoo.models.mask_rcnn.keypoint_names import COCO_PERSON_KEYPOINT_NAMES, flip_permutation
from segzoo.models.mask_rcnn.rpn import ProposalGenerator

SMALL = dict(backbone="resnet18", min_size=64, max_size=96, fpn_channels=16, representation_size=32,
             mask_head_channels=16, max_detections=5, seed=0)


def test_model_holds_and_serialises_its_parts_not_scalars():
    model = segzoo.get_model("mask_rcnn", num_classes=2, **SMALL)
    assert isinstance(model.rpn, RegionProposalNetwork) and isinstance(model.roi_heads, RoIHeads)
    assert isinstance(model.transform, DetectionTransform) and isinstance(model.fpn, FeaturePyramid)
    assert isinstance(model.roi_heads.box_roi_pool, MultiLevelRoIPooler)
    assert model.roi_heads.box_roi_pool.levels == ("P2", "P3", "P4", "P5")
    assert (model.min_size, model.max_size, model.max_detections, model.num_classes) == (64, 96, 5, 2)
    assert model.has_masks and not model.has_keypoints and not model.has_mask_scores
    assert model.num_keypoints == 0 and model.keypoint_names == [] and model.supports_jit
    assert model.loss_names == ("rpn_objectness", "rpn_box", "box_class", "box_regression", "mask")
    config = model.get_config()
    assert sorted(config) == sorted(["name", "trainable", "class_names", "category_ids", "keypoint_names",
                                     "keypoint_skeleton", "seed", "backbone", "fpn", "rpn", "roi_heads",
                                     "transform"])
    assert config["transform"]["config"]["min_size"] == 64
    assert config["roi_heads"]["config"]["detections_per_image"] == 5
    clone = MaskRCNN.from_config(config)
    assert clone.get_config() == config


def test_injected_parts_are_used_and_scalars_that_would_be_ignored_raise():
    predictor = BoxPredictor(4, name="box_predictor")
    transform = DetectionTransform(96, 128)
    model = segzoo.get_model("mask_rcnn", box_predictor=predictor, transform=transform,
                             **{k: v for k, v in SMALL.items() if k not in ("min_size", "max_size")})
    assert model.roi_heads.box_predictor is predictor and model.transform is transform
    assert model.num_classes == 4 and model.roi_heads.mask_predictor.num_classes == 4
    assert model.min_size == 96
    clashes = [
        dict(fpn=FeaturePyramid(16), fpn_channels=32),
        dict(transform=DetectionTransform(64, 96), min_size=64),
        dict(box_predictor=BoxPredictor(3), num_classes=3),
        dict(proposal_generator=ProposalGenerator(), rpn_nms_threshold=0.6),
        dict(box_roi_pooler=MultiLevelRoIPooler(7), roi_pooler="pool"),
        dict(roi_heads=model.roi_heads, mask_scoring=True),
        dict(rpn=model.rpn, rpn_head=model.rpn.head),
        dict(backbone_model=model.backbone, backbone="resnet34"),
    ]
    for kwargs in clashes:
        part = next(k for k in kwargs if k in ("fpn", "transform", "box_predictor", "proposal_generator",
                                               "box_roi_pooler", "roi_heads", "rpn", "backbone_model"))
        with pytest.raises(ValueError, match=f"{part} was passed as a part"):
            segzoo.get_model("mask_rcnn", **kwargs)


def test_transform_normalises_before_padding_when_it_owns_the_mean():
    transform = DetectionTransform(32, 64, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    images = np.full((1, 30, 40, 3), 255.0, np.float32)
    padded = transform.pad(images).numpy()
    assert padded.shape == (1, 32, 64, 3)
    np.testing.assert_allclose(padded[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
    assert not padded[0, 30:].any() and not padded[0, :, 40:].any()  # zero in normalised space
    resized, size = transform(np.zeros((2, 50, 100, 3), np.float32))
    assert tuple(int(s) for s in size) == (32, 64) and resized.shape == (2, 32, 64, 3)
    with pytest.raises(ValueError, match="image_mean and image_std"):
        DetectionTransform(image_mean=(0.5, 0.5, 0.5))


def test_flip_permutation_swaps_left_and_right():
    perm = flip_permutation(COCO_PERSON_KEYPOINT_NAMES)
    assert perm == [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert flip_permutation(["Left_Top", "Right_Top", "centre", "left_only"]) == [1, 0, 2, 3]
