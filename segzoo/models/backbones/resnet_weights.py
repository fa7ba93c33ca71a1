"""Weight files of the ResNet backbones: Keras' ImageNet files (cache or download) and user files.

    load_resnet_weights(backbone, "imagenet")          # keras layout, depth 50/101/152
    load_resnet_weights(backbone, "my_resnet.h5")      # legacy .h5 by layer name
    load_resnet_weights(backbone, "backbone.weights.h5")   # Keras 3 file, by structure

The architecture is `segzoo.models.backbones.resnet`; this module only reads files.
"""

from __future__ import annotations

import os

import h5py
import keras
import numpy as np

_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# keras.applications.resnet.WEIGHTS_HASHES[...][1] (the include_top=False files).
_NOTOP_HASHES = {
    50: "4d473c1dd8becc155b73f8504c6f6626",
    101: "88cf7a10940856eca736dc7b7e228a21",
    152: "ee4c566cf9a93f14d82f913c2dc6dd0c",
}


def _imagenet_filename(depth):
    return f"resnet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _keras_cache_dirs():
    """Where `keras.utils.get_file(..., cache_subdir="models")` keeps files."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs = [os.path.join(home, "models"), os.path.join("/tmp", ".keras", "models")]
    return list(dict.fromkeys(os.path.expanduser(d) for d in dirs))


def _download(fname, file_hash):
    return keras.utils.get_file(fname, _WEIGHTS_URL + fname, cache_subdir="models",
                                file_hash=file_hash)


def imagenet_weights_path(depth):
    """Path of Keras' ImageNet ResNet-`depth` notop file: the cache, else a download.

    Raises:
        ValueError: no Keras ImageNet weights exist for `depth` (18, 34).
        FileNotFoundError: not cached and the download failed (offline); the
            message names the file, its URL and the directory to put it in.
    """
    if depth not in _NOTOP_HASHES:
        raise ValueError(
            f"weights='imagenet' is available for ResNet-{sorted(_NOTOP_HASHES)} "
            f"(keras.applications); received depth {depth}. Use weights=None or a PATH."
        )
    fname = _imagenet_filename(depth)
    dirs = _keras_cache_dirs()
    for directory in dirs:
        path = os.path.join(directory, fname)
        if os.path.isfile(path):
            return path
    try:
        return _download(fname, _NOTOP_HASHES[depth])
    except Exception as error:  # urllib / HTTP / hash errors: not available offline
        raise FileNotFoundError(
            f"weights='imagenet': {fname} is not in the Keras cache and could not be "
            f"downloaded ({type(error).__name__}: {error}). Download {_WEIGHTS_URL}{fname} "
            f"and put it in {dirs[0]}/ , or pass weights=PATH to the file."
        ) from error


def _decode(names):
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _read_legacy_h5(path):
    """Legacy Keras HDF5 weights (the keras.applications files): name -> arrays."""
    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        weights = {}
        for name in _decode(group.attrs["layer_names"]):
            layer = group[name]
            weights[name] = [np.asarray(layer[w]) for w in _decode(layer.attrs["weight_names"])]
    return weights


def _plain_twin(backbone):
    """The same architecture with ordinary BN layers (Keras-3 files match by class)."""
    config = backbone.get_config()
    config.update(freeze_batchnorm=False, trainable_stages="all")
    return type(backbone).from_config(config)


def load_resnet_weights(backbone, weights):
    """Loads `weights` into `backbone` (a `ResNetBackbone`).

    Args:
        weights: "imagenet" (see `imagenet_weights_path`; keras layout only) or a
            path: a legacy Keras ``.h5`` (as Keras' ImageNet files, or
            ``model.save("x.h5")``), matched by layer name, so a file saved from
            ``keras.applications.ResNet50`` (with or without top) loads; or a
            Keras 3 ``.weights.h5`` / ``.keras`` file of the same architecture
            (matched by structure, as ``Model.load_weights``).
    Returns:
        the names of the layers that were loaded.
    Raises:
        FileNotFoundError: the file does not exist (or cannot be fetched).
        ValueError: wrong layout/depth, or the file lacks layers or has other
            shapes (the message lists them).
    """
    if weights == "imagenet" and (backbone.layout == "torchvision" or backbone.depth in (18, 34)):
        from segzoo.weights.catalogue import imagenet_resnet_path  # torchvision's file, converted once

        weights = imagenet_resnet_path(backbone.depth, backbone.layout)
    if weights == "imagenet":
        if backbone.layout != "keras":
            raise ValueError(
                "weights='imagenet' loads keras.applications weights, which need "
                f"layout='keras'; received layout={backbone.layout!r}."
            )
        path = imagenet_weights_path(backbone.depth)
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"ResNet weights file {path!r} does not exist; expected a Keras .h5, "
                f".weights.h5 or .keras file of a ResNet-{backbone.depth} "
                f"({backbone.layout} layout), or weights='imagenet'/None."
            )
    targets = {layer.name: layer for layer in backbone.layers if layer.weights}
    if path.endswith((".weights.h5", ".keras")):
        twin = _plain_twin(backbone)
        try:
            twin.load_weights(path)
        except Exception as error:
            raise ValueError(
                f"{path!r} does not fit ResNet-{backbone.depth} ({backbone.layout} layout): "
                f"{error}"
            ) from error
        source = {layer.name: layer.get_weights() for layer in twin.layers if layer.weights}
    else:
        try:
            source = _read_legacy_h5(path)
        except (OSError, KeyError) as error:
            raise ValueError(
                f"{path!r} is not a Keras HDF5 weights file (like "
                f"{_imagenet_filename(50)}): {error}"
            ) from error
    missing = [name for name in targets if name not in source]
    mismatched = [
        f"{name}: {[tuple(w.shape) for w in layer.weights]} here, "
        f"{[tuple(a.shape) for a in source[name]]} in the file"
        for name, layer in targets.items()
        if name in source
        and [tuple(w.shape) for w in layer.weights] != [tuple(a.shape) for a in source[name]]
    ]
    if missing or mismatched:
        problems = []
        if missing:
            problems.append(f"{len(missing)} layers missing from the file (e.g. {missing[:3]})")
        if mismatched:
            problems.append(f"{len(mismatched)} layers with other shapes (e.g. {mismatched[:2]})")
        raise ValueError(
            f"{path!r} does not fit ResNet-{backbone.depth} ({backbone.layout} layout): "
            + "; ".join(problems) + ". Check `depth` and `layout` (keras layout: convs "
            "with bias; torchvision layout: without)."
        )
    for name, layer in targets.items():
        layer.set_weights(source[name])
    return list(targets)
