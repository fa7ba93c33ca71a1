"""The segzoo model contract: what generic code (training, inference, export, commands) may ask a model.

A segzoo model is a `keras.Model` subclass built the keras-hub way: the
constructor builds a functional graph (or, for Mask R-CNN, owns sub-layers),
stores every constructor argument and returns them from `get_config()`, and the
class is registered serialisable under package "segzoo". So a `.keras` file
carries the model's config and class names and loads with `safe_mode=True`
without executing code from the file.

Every segzoo model class also derives from `SegmentationModel` (a plain mixin,
listed before `keras.Model`: `class UNet(SegmentationModel, keras.Model)`),
which states the contract in one place:

    task                    "semantic" (logits [B, H, W, K]) | "instance" (detection dict)
    class_names             list[str], index = the model's class id. Semantic:
                            K names, ids 0..K-1. Instance: K + 1 names, index 0
                            is the implicit background, 1..K the classes.
    foreground_class_names  the names `category_ids` describe, one each: semantic:
                            all K (every id 0..K-1 is scored, there is no implicit
                            background slot); instance: class_names[1:].
    category_ids            the dataset's id of each foreground class: semantic
                            0..K-1 unless set; instance the original id of class
                            k at k - 1 (default 1..K; COCO ids may be sparse).
    class_dependent_layers  top-level layer names whose weight shapes depend on
                            the class count (skipped when fine-tuning to another
                            class count).
    supports_jit            whether training may compile with XLA (`--jit-compile`).
    training_input_spec     `InputSpec`: what the training pipeline must feed.
    serving_call(pixels)    the model on float32 RGB pixels [B, H, W, 3] in
                            [0, 255] with outputs covering the input (what
                            inference and the export run).
    max_detections          instance models: N, the detection slots per image.
    has_masks, has_mask_scores, has_keypoints
                            instance models: which per-detection outputs the
                            model has ("masks"; MS R-CNN "mask_scores"; keypoint
                            models "keypoints" and "keypoint_scores").
    num_keypoints, keypoint_names, keypoint_skeleton
                            keypoint models: K, the K names, 0-based index
                            pairs to draw (0, (), () otherwise).

Generic code reads these attributes directly; it never probes with `getattr`
or tests class names.
"""

from __future__ import annotations

import dataclasses
import os

import keras

TASKS = ("semantic", "instance")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model's training pipeline must produce.

    Attributes:
        channels: image channels the model takes (3 = RGB; 1 = grey).
        min_size: instance models: the short side inference resizes to (train
            at it, or object sizes mismatch); None for semantic models.
        max_size: instance models: the long-side cap of that resize.
    """

    channels: int = 3
    min_size: int | None = None
    max_size: int | None = None


class SegmentationModel:
    """The segzoo model contract (module docstring). A mixin: `class M(SegmentationModel, keras.Model)`.

    Subclasses set the class attributes `task`, `class_dependent_layers` and
    (when it is not True) `supports_jit`, and the instance attribute
    `class_names`; they override `training_input_spec` / `serving_call` where
    the defaults (RGB input, the plain call) do not fit.
    """

    task: str = ""
    class_dependent_layers: tuple[str, ...] = ()
    supports_jit: bool = True
    # Instance models' branches (a detector sets these from its heads).
    has_masks: bool = True
    has_mask_scores: bool = False
    has_keypoints: bool = False
    num_keypoints: int = 0
    keypoint_names: tuple = ()
    keypoint_skeleton: tuple = ()

    @property
    def foreground_class_names(self) -> list[str]:
        names = [str(n) for n in self.class_names]
        return names[1:] if self.task == "instance" else names

    @property
    def category_ids(self) -> list[int]:
        ids = self.__dict__.get("_segzoo_category_ids")
        if ids is not None:
            return list(ids)
        first = 1 if self.task == "instance" else 0
        return list(range(first, first + len(self.foreground_class_names)))

    @category_ids.setter
    def category_ids(self, value):
        """None (the default ids) or one int per foreground class, distinct."""
        if value is not None:
            value = [int(c) for c in value]
            expected = len(self.foreground_class_names)
            if len(value) != expected:
                raise ValueError(f"category_ids has {len(value)} entries but the model has "
                                 f"{expected} {self.task} classes; give one id per class")
            if len(set(value)) != len(value):
                raise ValueError(f"category_ids must be distinct, got {value}")
            value = tuple(value)
        # Stored untracked: plain data, not a Keras dependency.
        object.__setattr__(self, "_segzoo_category_ids", value)

    @property
    def training_input_spec(self) -> InputSpec:
        return InputSpec()

    def serving_call(self, pixels):
        """Outputs for float32 RGB pixels [B, H, W, 3] in [0, 255].

        Semantic: logits float32 [B, H, W, K] covering the whole input.
        Instance: the detection dict (`segzoo.models.mask_rcnn.model`).
        The default converts RGB to grey for one-channel models and calls the model.
        """
        import tensorflow as tf

        if self.training_input_spec.channels == 1:
            pixels = tf.image.rgb_to_grayscale(pixels)
        return self(pixels, training=False)


def traced(model, key: str, python_function, **tf_function_kwargs):
    """The `tf.function(python_function, **tf_function_kwargs)` stored on `model` under `key`.

    Traced on first use and kept with the model (not in a global cache keyed
    by `id(model)`): it lives exactly as long as the model and alternating
    between models never retraces. Use it to run a model's eager calls as one
    graph (per-op eager dispatch of a whole network is far slower).
    """
    import tensorflow as tf

    functions = model.__dict__.get("_segzoo_traced")
    if functions is None:
        functions = {}
        object.__setattr__(model, "_segzoo_traced", functions)  # untracked by Keras
    function = functions.get(key)
    if function is None:
        function = functions[key] = tf.function(python_function, **tf_function_kwargs)
    return function


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
    """A `keras.Model` following the contract (`SegmentationModel` with a known task)."""
    return (isinstance(model, keras.Model) and isinstance(model, SegmentationModel)
            and model.task in TASKS)


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
