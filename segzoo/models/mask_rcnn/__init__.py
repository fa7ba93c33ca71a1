"""Mask R-CNN, one component a file (anchors, box coder, RPN, RoI heads, transform, targets, losses, ...).

Registered models (`builders.py`): mask_rcnn, ms_rcnn, keypoint_rcnn.
"""

# Import every module with a serialisable part, so a `.keras` file loads in a fresh process.
from segzoo.models.mask_rcnn import anchors, box_head, mask_head, matcher, sampler  # noqa: F401
from segzoo.models.mask_rcnn.builders import keypoint_rcnn, mask_rcnn, ms_rcnn  # noqa: F401
from segzoo.models.mask_rcnn.keypoint_head import KeypointHead, KeypointPredictor  # noqa: F401
from segzoo.models.mask_rcnn.keypoint_names import COCO_PERSON_KEYPOINT_NAMES, COCO_PERSON_SKELETON  # noqa: F401
from segzoo.models.mask_rcnn.maskiou_head import MaskIoUHead, MaskIoUPredictor  # noqa: F401
from segzoo.models.mask_rcnn.model import MaskRCNN  # noqa: F401
from segzoo.models.mask_rcnn.roi_heads import RoIHeads  # noqa: F401
from segzoo.models.mask_rcnn.rpn import RegionProposalNetwork  # noqa: F401
from segzoo.models.mask_rcnn.transform import DetectionTransform  # noqa: F401

# Registers the serialisable parts the builders import lazily, so a `.keras` loads in a fresh process.
from segzoo.models.mask_rcnn import anchors, box_head, mask_head, matcher, sampler  # noqa: E402,F401
