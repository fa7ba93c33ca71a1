"""Trained weights: readers for torch and Caffe files, converters, and a catalogue.

    segzoo.weights.convert(source, arch, weights, out)   # `segzoo convert`
    segzoo.weights.CATALOGUE / get(name) / resolve(name)  # `segzoo weights list|get`

Modules: `torch_pickle` (restricted .pth reader), `caffe_proto` (NetParameter
reader), `torchvision` / `caffe` / `detectors` (name and layout mapping),
`catalogue` (published checkpoints, cache under ``$SEGZOO_HOME``).
"""

from segzoo.weights.convert import ARCHS, convert

__all__ = ["ARCHS", "convert"]
