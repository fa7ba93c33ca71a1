"""The FCN authors' Caffe nets (``voc-fcn{32,16,8}s``) -> segzoo `FCN` layers.

Caffe layer -> segzoo layer (`segzoo.models.fcn`, Keras VGG16 names):

    conv{b}_{i}                           -> block{b}_conv{i}
    fc6 (Convolution 7x7, or the VGG16    -> fc6          (Conv2D 7x7, 4096)
         InnerProduct (4096, 512*7*7))
    fc7                                   -> fc7          (Conv2D 1x1, 4096)
    score_fr, score_pool4, score_pool3    -> same names  (Conv2D 1x1, K)
    upscore, upscore2, upscore16,         -> same names  (`Upsample2D` kernels, no bias)
    upscore_pool4, upscore8

Blob layouts: convolution ``(O, I, kh, kw)`` -> Keras ``(kh, kw, I, O)``;
deconvolution ``(I, O, kh, kw)`` -> Keras Conv2DTranspose ``(kh, kw, O, I)``
(Caffe's deconvolution is the transposed convolution, scattering without a
spatial flip, as Keras'); an InnerProduct ``(O, C*h*w)`` flattened in Caffe's
(C, h, w) order is reshaped to ``(O, C, h, w)`` first. Hyphenated names of
the first FCN release (``score-fr``) are accepted as underscores.

The input side needs nothing: segzoo's FCN already takes RGB [0, 255] and does
Caffe's preprocessing inside (`CaffeVGGPreprocess`: RGB -> BGR, minus the
mean (103.939, 116.779, 123.68); the FCN nets' own mean is (104.00699,
116.66877, 122.67892), a difference of < 1.1 grey levels, documented, not hidden).
"""

from __future__ import annotations

import numpy as np

from segzoo.errors import ArgumentError, arg
from segzoo.weights.caffe_proto import read_caffemodel
from segzoo.weights.torchvision import conv_kernel, deconv_kernel

FCN_ARCHS = ("fcn32s", "fcn16s", "fcn8s")
UPSAMPLERS = ("upscore", "upscore2", "upscore16", "upscore_pool4", "upscore8")


def _target_name(caffe_name):
    name = caffe_name.replace("-", "_")
    if name.startswith("conv") and "_" in name and name[4:].split("_")[0].isdigit():
        block, index = name[4:].split("_", 1)
        return f"block{block}_conv{index}"
    return name


def fcn_layer_weights(layers, model, source):
    """Caffe layers -> ``{segzoo layer name: [Keras arrays]}`` for `model` (an FCN).

    Args:
        layers: `CaffeLayer` list from `read_caffemodel`.
        model: the FCN to fill (its layer shapes decide fc6's reshape).
        source: file name for messages.
    Returns:
        dict of layer weights, one entry per Caffe layer with blobs.
    Raises:
        ValueError: a layer with blobs has no segzoo counterpart (e.g. an FCN-8s file
            converted as fcn32s), or blob shapes do not fit.
    """
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    out, unknown = {}, []
    for layer in layers:
        if not layer.blobs:
            continue
        name = _target_name(layer.name)
        if name not in targets:
            unknown.append(layer.name)
            continue
        target = targets[name]
        blobs = layer.blobs
        if name in UPSAMPLERS:
            if len(blobs) != 1:
                raise ValueError(f"{source}: deconvolution {layer.name} has {len(blobs)} blobs; "
                                 "FCN's upsamplers have a kernel and no bias")
            out[name] = [deconv_kernel(blobs[0])]
            continue
        kernel_shape = tuple(target.weights[0].shape)  # (kh, kw, I, O)
        weight = blobs[0]
        if weight.ndim == 2:  # InnerProduct (O, C*h*w), Caffe's (C, h, w) flatten order
            kh, kw, channels, outputs = kernel_shape
            if weight.shape != (outputs, channels * kh * kw):
                raise ValueError(f"{source}: {layer.name} is {weight.shape}, {name} needs "
                                 f"({outputs}, {channels * kh * kw})")
            weight = weight.reshape(outputs, channels, kh, kw)
        arrays = [conv_kernel(weight)]
        if len(blobs) > 1:
            arrays.append(blobs[1].reshape(-1))
        out[name] = arrays
    if unknown:
        raise ArgumentError(
            f"{source}: layers {unknown} have weights but {model.name} has no such layer; "
            f"check {arg('arch')} (fcn32s has score_fr, fcn16s adds score_pool4, fcn8s score_pool3)")
    return out


def convert_fcn(arch, weights_path, out=None, verbose=True):
    """Builds the segzoo FCN `arch` with the Caffe weights of `weights_path`.

    Args:
        arch: "fcn32s" | "fcn16s" | "fcn8s".
        weights_path: a ``.caffemodel`` (voc-fcn*s, 21 classes).
        out: optional ``.keras`` path written atomically.
    Returns:
        (model, {segzoo layer name: [arrays]}) - the arrays as set, for checks.
    Raises:
        ValueError / FileNotFoundError naming the file.
    """
    import segzoo
    from segzoo.data.voc import VOC_CLASSES
    from segzoo.weights.files import save_model_atomic

    if arch not in FCN_ARCHS:
        raise ArgumentError(f"{arg('arch', arch)}: Caffe conversion supports {', '.join(FCN_ARCHS)}")
    _, layers = read_caffemodel(weights_path)
    score = next((layer for layer in layers if _target_name(layer.name) == "score_fr"), None)
    if score is None or not score.blobs:
        raise ValueError(f"{weights_path}: no score_fr layer with weights; expected an FCN "
                         "caffemodel (voc-fcn32s/16s/8s)")
    num_classes = int(score.blobs[0].shape[0])
    class_names = list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) else None
    model = segzoo.get_model(arch, num_classes=num_classes, class_names=class_names)
    arrays = fcn_layer_weights(layers, model, weights_path)
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    missing = [name for name in targets if name not in arrays and name not in UPSAMPLERS]
    if missing:
        raise ValueError(f"{weights_path}: no weights for {missing} of {arch}")
    for name, values in arrays.items():
        expected = [tuple(w.shape) for w in targets[name].weights]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(f"{weights_path}: layer {name} expects {expected}, the file gives "
                             f"{[tuple(v.shape) for v in values]}")
        targets[name].set_weights(values)
    if verbose:
        kept = [n for n in targets if n not in arrays]
        print(f"{weights_path}: {len(arrays)} layers from Caffe"
              + (f"; kept bilinear upsamplers {kept}" if kept else ""))
    if out is not None:
        save_model_atomic(model, out)
    return model, arrays


def caffe_blob(layers, name, index=0):
    """The blob `index` of Caffe layer `name` (for checks), as float32 in Caffe's layout."""
    for layer in layers:
        if layer.name == name:
            return np.asarray(layer.blobs[index])
    raise KeyError(name)
