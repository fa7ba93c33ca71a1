"""Mask R-CNN, one component a file (anchors, box coder, RPN, heads, targets, losses, ...)."""

from segzoo.models.mask_rcnn.keypoint_head import KeypointHead, KeypointPredictor  # noqa: F401
from segzoo.models.mask_rcnn.maskiou_head import MaskIoUHead, MaskIoUPredictor  # noqa: F401
from segzoo.models.mask_rcnn.model import MaskRCNN, mask_rcnn  # noqa: F401
