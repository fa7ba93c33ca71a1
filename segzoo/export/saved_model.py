"""SavedModel export with the serving signatures of DESIGN.md "Exported SavedModel".

    from segzoo.export import export_saved_model
    path = export_saved_model(model, "exports/unet")
    # or the TF Serving layout: exports/unet/1/
    path = export_saved_model(model, "exports", serving_layout=True, version=1)

The directory holds `saved_model.pb`, `variables/` and `assets/`:
`class_names.txt` (one name a line; semantic: ids 0..K-1, instance: ids 1..K
in order) and `segzoo.json` (task, class names, category ids, signatures).
"""

from __future__ import annotations

import json
import os
import re

import tensorflow as tf

from segzoo.export.files import replace_path, staging_directory
from segzoo.export.serving import ServingModule
from segzoo.models.base import is_segzoo_model

SIGNATURES = ("serving_default", "serving_bytes")


def check_model(model) -> None:
    if not is_segzoo_model(model):
        raise ValueError(
            f"expected a segzoo model (a keras.Model with task 'semantic' or 'instance'), "
            f"got {type(model).__name__}"
        )


def check_max_detections(model, max_detections) -> None:
    """An instance model's export may keep fewer detections than the model makes, not more."""
    model_max = model.max_detections if model.task == "instance" else None
    if max_detections is not None and model_max is not None and int(max_detections) > model_max:
        raise ValueError(
            f"max_detections={max_detections} exceeds the model's max_detections={model_max}; "
            "rebuild the model with a larger max_detections or export fewer")


def serving_path(path, model, *, serving_layout: bool, version, name=None) -> str:
    """Where the SavedModel goes: PATH, or PATH/NAME/VERSION with `serving_layout`."""
    path = os.fspath(path)
    if not serving_layout:
        return path
    if version is None or int(version) < 1:
        raise ValueError(f"version must be a positive integer for the TF Serving layout, "
                         f"got {version!r}")
    name = name or model.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"model name {name!r} cannot be a TF Serving directory name")
    return os.path.join(path, name, str(int(version)))


def _metadata(module: ServingModule, model) -> dict:
    outputs = module.output_names
    from segzoo import __version__

    keypoints = {}
    if model.has_keypoints:
        keypoints = {"keypoint_names": [str(n) for n in model.keypoint_names],
                     "keypoint_skeleton": [[int(a), int(b)] for a, b in model.keypoint_skeleton]}
    return {
        "format": "segzoo-saved-model/1",
        "segzoo_version": __version__,
        "model_class": type(model).__name__,
        "task": module.task,
        "class_names": module.class_name_list,
        "category_ids": module.category_id_list if module.task == "instance" else None,
        "max_detections": module.max_detections,
        **keypoints,
        "signatures": {
            "serving_default": {"inputs": {"images": "uint8 [B, H, W, 3]"},
                                "outputs": list(outputs)},
            "serving_bytes": {"inputs": {"image_bytes": "string [B]"},
                              "outputs": list(outputs) + ["image_sizes"]},
        },
    }


def export_saved_model(model, path, *, max_detections=None, serving_layout=False, version=1,
                       name=None) -> str:
    """Writes `model` as a SavedModel with `serving_default` and `serving_bytes`.

    Args:
        model: a segzoo model (built; a model straight from `segzoo.get_model`
            is fine).
        path: destination directory (replaced as a whole if it exists), or
            with `serving_layout` the TF Serving base directory.
        max_detections: instance models: at most this many detections per
            image (must not exceed the model's own `max_detections`).
        serving_layout: write `path/NAME/VERSION/` (TF Serving's model layout).
        version: the positive integer VERSION for `serving_layout`.
        name: NAME for `serving_layout` (default: `model.name`).
    Returns:
        the SavedModel directory written.
    """
    check_model(model)
    check_max_detections(model, max_detections)
    destination = serving_path(path, model, serving_layout=serving_layout, version=version,
                               name=name)
    module = ServingModule(model, max_detections=max_detections)
    with staging_directory(destination) as staging:
        asset_dir = os.path.join(staging, "assets-source")
        os.makedirs(asset_dir)
        names_file = os.path.join(asset_dir, "class_names.txt")
        with open(names_file, "w", encoding="utf-8") as f:
            f.write("".join(n.replace("\n", " ") + "\n" for n in module.class_name_list))
        metadata_file = os.path.join(asset_dir, "segzoo.json")
        with open(metadata_file, "w", encoding="utf-8") as f:
            json.dump(_metadata(module, model), f, indent=2)
        module.class_names_file = tf.saved_model.Asset(names_file)
        module.metadata_file = tf.saved_model.Asset(metadata_file)
        saved = os.path.join(staging, "saved_model")
        tf.saved_model.save(module, saved, signatures=module.signatures())
        replace_path(saved, destination)
    return destination
