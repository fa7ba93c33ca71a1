"""Backbones: functional feature extractors whose layers load pretrained weights by name."""

from segzoo.models.backbones.vgg import load_vgg16_weights, vgg16_features  # noqa: F401
