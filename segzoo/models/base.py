"""What every segzoo model shares: task, class names, checkpoint loading.

A segzoo model is a `keras.Model` subclass built the keras-hub way: the
constructor builds a functional graph (or, for Mask R-CNN, owns sub-layers),
stores every constructor argument and returns them from `get_config()`, and the
class is registered serialisable under package "segzoo". So a `.keras` file
carries the model's config and class names and loads with `safe_mode=True`
without executing code from the file. Each model class sets:

    task: "semantic" | "instance"
    class_names: list[str], index = class id (semantic: 0..K-1; instance: 0 is
        background, 1..K the classes)
"""

from __future__ import annotations

import os

import keras


def default_class_names(num_classes: int) -> list[str]:
    """`["class_0", "class_1", ...]`: names for a model built without any."""
    return [f"class_{i}" for i in range(int(num_classes))]


def positive_int(name: str, value) -> int:
    """`value` as an int; `ValueError` naming the argument `name` unless it is an integer >= 1
    (bools are rejected; an integral float such as 3.0 is accepted)."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def resolve_class_names(class_names, num_classes: int) -> list[str]:
    """Validates `class_names` against `num_classes` (None -> defaults)."""
    if class_names is None:
        return default_class_names(num_classes)
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} entries but num_classes={num_classes}; "
            "give one name per class id."
        )
    return class_names


def is_segzoo_model(model) -> bool:
    return isinstance(model, keras.Model) and getattr(model, "task", None) in (
        "semantic",
        "instance",
    )


def load_checkpoint(path: str | os.PathLike, *, compile: bool = False) -> keras.Model:
    """Loads a segzoo `.keras` checkpoint with `safe_mode=True`.

    Raises:
        FileNotFoundError: `path` does not exist (a run directory is accepted
            and resolved to `RUN_DIR/model.keras`).
        ValueError: the file is not a `.keras` archive or not a segzoo model.
    """
    import segzoo.models  # noqa: F401  (registers the serialisable classes)
    from segzoo.weights.catalogue import resolve_checkpoint

    path = resolve_checkpoint(os.fspath(path))  # a `segzoo weights` name -> its converted file
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"checkpoint {path!r} does not exist; pass RUN_DIR/model.keras written by `segzoo train`"
        )
    if not path.endswith(".keras"):
        raise ValueError(f"checkpoint {path!r}: expected a Keras 3 `.keras` file")
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as error:  # keras raises many types for a bad archive
        raise ValueError(f"checkpoint {path!r} could not be loaded as a Keras model: {error}") from error
    if not is_segzoo_model(model):
        raise ValueError(
            f"checkpoint {path!r} holds a {type(model).__name__}, not a segzoo model "
            "(expected one saved by `segzoo train` or from `segzoo.get_model(...)`)"
        )
    return model
