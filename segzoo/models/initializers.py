"""Weight initialisers the model heads share (one definition each).

`he_fan_out()`: torchvision's / detectron2's `kaiming_normal_(mode="fan_out",
nonlinearity="relu")` of the Mask R-CNN heads (mask, keypoint and MaskIoU
heads): normal with std sqrt(2 / fan_out), not truncated.
"""

from __future__ import annotations

import keras


def he_fan_out() -> keras.initializers.Initializer:
    """`VarianceScaling(2.0, "fan_out", "untruncated_normal")` (kaiming_normal_, fan_out, ReLU)."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="untruncated_normal")
