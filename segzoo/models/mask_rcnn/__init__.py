"""Mask R-CNN, one component a file (anchors, box coder, RPN, heads, targets, losses, ...)."""

from segzoo.models.mask_rcnn.model import CLASS_DEPENDENT_LAYERS, MaskRCNN, mask_rcnn  # noqa: F401
