"""Backbones: functional feature extractors whose layers load pretrained weights by name."""

from segzoo.models.backbones.resnet import (  # noqa: F401
    STAGES,
    FrozenBatchNormalization,
    ImageNormalization,
    ResNetBackbone,
    load_resnet_weights,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnet_backbone,
    set_trainable_stages,
)
from segzoo.models.backbones.vgg import load_vgg16_weights, vgg16_backbone, vgg16_features  # noqa: F401
