"""VGG16 laid out and named as `keras.applications.VGG16`, plus its ImageNet weights.

`vgg16_features` builds the 13 convolutions (`block1_conv1` ... `block5_conv3`),
the five pools (`block1_pool` ... `block5_pool`) and, for FCN, the fully
connected layers as convolutions (`fc6`: 7x7, 4096; `fc7`: 1x1, 4096) on a
tensor of the caller's functional graph, so the caller's model holds the
layers at its top level under the Keras names and the ImageNet weights load
by name (`load_vgg16_weights`).

Pools use `padding="same"`: Caffe's pooling rounds the output size up
(`ceil((H - 2) / 2) + 1 = ceil(H / 2)`), as the FCN reference nets were trained.
"""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np

from segzoo.models.backbones.preprocessing import (  # noqa: F401  (CAFFE_BGR_MEAN: re-exported)
    CAFFE_BGR_MEAN,
    ImageNormalization,
)

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG16_CONV_LAYERS = tuple(
    f"block{b}_conv{i}" for b, (_, n) in enumerate(VGG16_BLOCKS, start=1) for i in range(1, n + 1)
)

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
WEIGHTS_FILE_TOP = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
WEIGHTS_FILE_NOTOP = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_HASH = {
    WEIGHTS_FILE_TOP: "64373286793e3c8b2b4e3219cbf3544b",
    WEIGHTS_FILE_NOTOP: "6d6bbae143d832006294945121d1f1fc",
}


def vgg16_features(images, *, pad=100, include_fc=True, dropout_rate=0.5, base_filters=64,
                   fc_channels=4096) -> dict:
    """Applies VGG16 (Caffe FCN layout) to `images`, returns its feature pyramid.

    Args:
        images: preprocessed float tensor [B, H, W, 3] (`ImageNormalization("caffe")`: BGR, mean-free).
        pad: zeros added on every side before `block1_conv1` (a valid 3x3 conv):
            100 is FCN's `conv1_1 pad=100`; 0 gives plain VGG16 with "same" convs
            (then `block1_conv1` pads by 1 itself).
        include_fc: adds `fc6` (7x7 valid conv, 4096, ReLU, dropout) and `fc7`
            (1x1 conv, 4096, ReLU, dropout).
        dropout_rate: rate of the dropout after fc6 and fc7 (`drop6`, `drop7`).
        base_filters: channels of block 1 (64 = VGG16); the blocks have
            base_filters * (1, 2, 4, 8, 8). Narrower nets (e.g. 8) are for CPU
            experiments (`segzoo ablate fcn`); ImageNet weights need 64.
        fc_channels: channels of fc6 and fc7 (4096 = VGG16).
    Returns:
        dict of tensors: "pool1" .. "pool5" (strides 2 .. 32 of the padded
        input, channels base_filters * (1, 2, 4, 8, 8)) and, with include_fc, "fc7".
    """
    x = images
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name="block1_pad")(x)
    features = {}
    for block, (filters, num_convs) in enumerate(VGG16_BLOCKS, start=1):
        filters = filters * int(base_filters) // 64
        for i in range(1, num_convs + 1):
            padding = "valid" if (block, i) == (1, 1) and pad else "same"
            x = keras.layers.Conv2D(filters, 3, padding=padding, activation="relu",
                                    name=f"block{block}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
        features[f"pool{block}"] = x
    if include_fc:
        x = keras.layers.Conv2D(fc_channels, 7, padding="valid", activation="relu", name="fc6")(x)
        x = keras.layers.Dropout(dropout_rate, name="drop6")(x)
        x = keras.layers.Conv2D(fc_channels, 1, padding="valid", activation="relu", name="fc7")(x)
        x = keras.layers.Dropout(dropout_rate, name="drop7")(x)
        features["fc7"] = x
    return features


def vgg16_backbone(*, pad=0, include_fc=False, dropout_rate=0.5, weights=None,
                   name="vgg16_backbone") -> keras.Model:
    """VGG16 as a functional backbone: RGB [0, 255] images -> pyramid dict.

    Args:
        pad, include_fc, dropout_rate: as in `vgg16_features`.
        weights: None, "imagenet" or a path (see `load_vgg16_weights`).
    Returns:
        keras.Model mapping float32 [B, H, W, 3] RGB in [0, 255] to
        {"pool1": stride 2, ..., "pool5": stride 32 (, "fc7")}; preprocessing inside.
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    features = vgg16_features(ImageNormalization("caffe", name="preprocess")(images), pad=pad,
                              include_fc=include_fc, dropout_rate=dropout_rate)
    model = keras.Model(images, features, name=name)
    if weights is not None:
        load_vgg16_weights(model, weights)
    return model


def _keras_model_dirs() -> list[str]:
    """Where `keras.utils.get_file(..., cache_subdir="models")` keeps its files."""
    home = os.path.expanduser(
        os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    )
    dirs = [os.path.join(home, "models")]
    if not os.access(home, os.W_OK):  # keras.utils.get_file falls back to /tmp/.keras
        dirs.append(os.path.join("/tmp", ".keras", "models"))
    return dirs


def _download(fname: str) -> str:
    return keras.utils.get_file(fname, WEIGHTS_URL + fname, cache_subdir="models",
                                file_hash=WEIGHTS_HASH[fname])


def find_imagenet_weights() -> str:
    """Path of the ImageNet VGG16 weights: the Keras cache, else a download.

    Prefers the include_top file (`vgg16_weights_tf_dim_ordering_tf_kernels.h5`,
    which also gives fc6/fc7) when cached, then the notop file; if neither is
    cached, downloads the notop file.

    Raises:
        ValueError: neither file is cached and the download fails (offline);
            the message names the file and where to put it.
    """
    dirs = _keras_model_dirs()
    for fname in (WEIGHTS_FILE_TOP, WEIGHTS_FILE_NOTOP):
        for directory in dirs:
            path = os.path.join(directory, fname)
            if os.path.isfile(path):
                return path
    try:
        return _download(WEIGHTS_FILE_NOTOP)
    except Exception as error:  # urllib/HTTP/hash errors all mean "not available"
        raise ValueError(
            f"backbone_weights='imagenet': the VGG16 ImageNet weights are not cached and could not "
            f"be downloaded ({type(error).__name__}: {error}). Download {WEIGHTS_URL}"
            f"{WEIGHTS_FILE_NOTOP} (or {WEIGHTS_FILE_TOP}, which also initialises fc6/fc7) and put "
            f"it in {dirs[0]}/, or pass backbone_weights=PATH to the .h5 file."
        ) from error


def read_keras_h5_weights(path: str) -> dict[str, list[np.ndarray]]:
    """Reads a Keras (legacy HDF5) weights file: layer name -> list of arrays."""
    if not os.path.isfile(path):
        raise ValueError(f"backbone_weights={path!r}: no such file (expected a Keras VGG16 .h5)")
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            names = [n.decode() if isinstance(n, bytes) else str(n)
                     for n in group.attrs["layer_names"]]
            weights = {}
            for name in names:
                layer = group[name]
                weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                                for w in layer.attrs["weight_names"]]
                weights[name] = [np.asarray(layer[w]) for w in weight_names]
    except (OSError, KeyError) as error:
        raise ValueError(
            f"backbone_weights={path!r} is not a Keras HDF5 weights file "
            f"(like {WEIGHTS_FILE_NOTOP}): {error}"
        ) from error
    return weights


def fc_to_conv(fc_weights, kernel_shape) -> list[np.ndarray]:
    """Reshapes Keras VGG16 Dense weights (fc1/fc2) into FCN's fc6/fc7 conv kernels.

    Keras' VGG16 flattens pool5 [7, 7, 512] in (row, col, channel) order, so
    the Dense kernel [25088, 4096] is the conv kernel [7, 7, 512, 4096]
    reshaped; fc2 [4096, 4096] becomes [1, 1, 4096, 4096]. Biases are unchanged.
    """
    kernel, bias = fc_weights
    return [np.reshape(kernel, kernel_shape), bias]


def load_vgg16_weights(model, weights) -> list[str]:
    """Loads ImageNet VGG16 weights into the VGG16 layers of `model`, by name.

    Args:
        model: a Keras model holding `block1_conv1` ... `block5_conv3` (and
            optionally `fc6`, `fc7`) at its top level, as `vgg16_features` builds.
        weights: "imagenet" (see `find_imagenet_weights`) or a path to a Keras
            VGG16 .h5 weights file (notop or include_top).
    Returns:
        names of the layers that were loaded (fc6/fc7 only from an include_top file).
    Raises:
        ValueError: unknown `weights`, unreadable file, or missing/mismatched layers.
    """
    if weights == "imagenet":
        path = find_imagenet_weights()
    elif isinstance(weights, (str, os.PathLike)):
        path = os.fspath(weights)
    else:
        raise ValueError(f"backbone_weights must be None, 'imagenet' or a path, got {weights!r}")
    source = read_keras_h5_weights(path)
    targets = {name: name for name in VGG16_CONV_LAYERS}
    if "fc1" in source and "fc2" in source:
        targets.update(fc6="fc1", fc7="fc2")
    loaded = []
    for target_name, source_name in targets.items():
        try:
            layer = model.get_layer(target_name)
        except ValueError:
            continue
        if source_name not in source:
            raise ValueError(f"{path!r} has no weights for layer {source_name!r} (VGG16 expected)")
        values = source[source_name]
        if target_name in ("fc6", "fc7"):
            values = fc_to_conv(values, tuple(layer.kernel.shape))
        expected = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(
                f"{path!r}: layer {source_name!r} has weights of shapes "
                f"{[tuple(v.shape) for v in values]}, {target_name!r} expects {expected}"
            )
        layer.set_weights(values)
        loaded.append(target_name)
    return loaded
