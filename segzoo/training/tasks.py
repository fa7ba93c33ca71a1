"""Task objects: the task-specific part of the common fit loop.

`get_task(model)` returns a `SemanticTask` for semantic models (logits
[B, H, W, K]) and an `InstanceTask` (`segzoo.training.instance_task`) for
instance models. A task knows how to build the training / validation
`tf.data` pipelines, what to pass to `model.compile`, how to evaluate a model
on raw dataset elements, and which validation metric selects the best
checkpoint (`monitor`).
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from segzoo.evaluation.semantic import ConfusionMatrix
from segzoo.training.losses import get_loss
from segzoo.training.metrics import SegmentationMeanIoU


class SemanticTask:
    """Semantic segmentation: pixel-wise CE ignoring 255, mean IoU.

    Args:
        model: a semantic segzoo model (`model.class_names` has K entries).
        augment: random scale (`scale_range`), horizontal flip and photometric
            jitter in the training pipeline; False gives plain crops.
        scale_range: (min, max) random scale factor when augmenting.
        normalize_loss: see `SparseSegmentationCrossEntropy`.
        val_max_images: validate on at most this many images (None = all).
        shuffle_buffer: training shuffle buffer (images, before augmentation; 0 = no shuffle).
        data_args: extra keyword arguments for `segzoo.data.load`.
        loss: "ce" | "dice" | "focal" | "ce+dice" (`segzoo.training.losses.get_loss`).
        class_weights: optional K per-class loss weights.
    """

    monitor = "val_mean_iou"
    monitor_mode = "max"

    def __init__(self, model, *, augment: bool = True, scale_range=(0.5, 2.0),
                 normalize_loss: bool = True, val_max_images: int | None = None,
                 shuffle_buffer: int = 256, data_args: dict | None = None, loss: str = "ce",
                 class_weights=None):
        self.model = model
        self.num_classes = len(model.class_names)
        self.augment = bool(augment)
        self.scale_range = tuple(float(s) for s in scale_range)
        self.normalize_loss = bool(normalize_loss)
        self.val_max_images = val_max_images
        self.shuffle_buffer = int(shuffle_buffer)
        self.data_args = dict(data_args or {})
        self.loss = loss
        self.class_weights = class_weights
        get_loss(loss)  # unknown names fail here, before any data is read

    # --- data ------------------------------------------------------------------------------
    def _load(self, data_name, data_dir, split):
        import segzoo.data

        return segzoo.data.load(data_name, split, data_dir=data_dir, **self.data_args)

    def train_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """Batches (images float32 [B, S, S, 3] in [0, 255], masks int32 [B, S, S])."""
        from segzoo.data import pipeline

        _check_task(info, "semantic", data_name)
        ds = self._load(data_name, data_dir, split)
        return self._channels(pipeline.semantic_train_pipeline(
            ds, int(image_size), int(batch_size),
            scale_range=self.scale_range if self.augment else (1.0, 1.0),
            flip=self.augment, photometric=self.augment, seed=seed,
            shuffle_buffer=self.shuffle_buffer, drop_remainder=True,
        ))

    def _channels(self, ds):
        """RGB batches as the model's `input_channels` (1: the luma; see `to_channels`)."""
        from segzoo.data import pipeline

        channels = int(getattr(self.model, "input_channels", 3))
        if channels == 3:
            return ds
        return ds.map(lambda images, masks: (pipeline.to_channels(images, channels), masks))

    def val_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """Batches at original resolution (batch 1) or 255-padded (batch > 1)."""
        from segzoo.data import pipeline

        _check_task(info, "semantic", data_name)
        ds = self._load(data_name, data_dir, split)
        if self.val_max_images:
            ds = ds.take(int(self.val_max_images))
        return self._channels(pipeline.semantic_eval_pipeline(ds, batch_size=int(batch_size)))

    # --- compile / evaluate ----------------------------------------------------------------
    def compile_kwargs(self) -> dict:
        return {
            "loss": get_loss(self.loss, normalize=self.normalize_loss,
                             class_weights=self.class_weights),
            "metrics": [SegmentationMeanIoU(self.num_classes)],
        }

    def evaluate(self, model, elements, info=None, *, max_images: int | None = None) -> dict:
        """FCN metrics over raw elements {"image": uint8 [H, W, 3], "mask": uint8 [H, W]}.

        Each image is segmented at its original size (batch 1, no resize) and
        compared with its mask; 255 is ignored. Returns `ConfusionMatrix.metrics()`
        plus `num_images`.
        """
        cm = ConfusionMatrix(len(model.class_names))

        def add(element):
            labels = predict_labels(model, np.asarray(element["image"]))
            cm.update(np.asarray(element["mask"]), labels)

        return evaluate_elements(elements, add, cm.metrics, max_images=max_images)


def evaluate_elements(elements, add, compute, *, max_images: int | None = None) -> dict:
    """The evaluation loop of every task: `add(element)` for each of the first `max_images`
    elements (all when None), then `compute()` (a metrics dict) plus `num_images`.

    Raises:
        ValueError: `elements` is empty.
    """
    count = 0
    for element in itertools.islice(elements, max_images):
        add(element)
        count += 1
    if count == 0:
        raise ValueError("evaluation got no images (empty split?)")
    metrics = compute()
    metrics["num_images"] = count
    return metrics


_PREDICT_FNS: dict[int, tf.types.experimental.GenericFunction] = {}


def predict_labels(model, image: np.ndarray, *, return_probabilities: bool = False):
    """Class ids int32 [H, W] (and softmax float32 [H, W, K]) for one image uint8/float [H, W, 3]
    (or [H, W, 1]); RGB becomes the luma for a model of `input_channels=1`."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    channels = int(getattr(model, "input_channels", 3))
    if image.shape[-1] != channels and channels == 1:
        image = (image.astype(np.float32) @ np.asarray([0.299, 0.587, 0.114], np.float32))[..., None]
    elif image.shape[-1] != channels:
        image = np.repeat(image, channels, axis=-1)
    fn = _PREDICT_FNS.get(id(model))
    if fn is None:
        @tf.function(reduce_retracing=True)
        def fn(images):
            logits = tf.cast(model(images, training=False), tf.float32)
            return tf.argmax(logits, -1, output_type=tf.int32), tf.nn.softmax(logits)

        _PREDICT_FNS.clear()
        _PREDICT_FNS[id(model)] = fn
    labels, probabilities = fn(tf.convert_to_tensor(image[None].astype(np.float32)))
    if return_probabilities:
        return labels[0].numpy(), probabilities[0].numpy()
    return labels[0].numpy()


def _check_task(info, expected, data_name):
    if info is not None and info.task != expected:
        raise ValueError(
            f"dataset {data_name!r} is a {info.task} dataset but the model is a {expected} model; "
            "pick a dataset of the model's task (see README)"
        )


def get_task(model, **options):
    """The task object of `model` (by `model.task`).

    `options` configure a `SemanticTask` (see its arguments); an `InstanceTask`
    (owned by Mask R-CNN) takes `val_max_images`, `data_args`, `max_instances`,
    `shuffle_buffer` of them.

    Raises:
        ValueError: the model has no known `task` attribute.
    """
    task = getattr(model, "task", None)
    if task == "semantic":
        return SemanticTask(model, **options)
    if task == "instance":
        from segzoo.training.instance_task import InstanceTask

        keep = ("val_max_images", "data_args", "max_instances", "shuffle_buffer", "scale_jitter")
        return InstanceTask(model, **{k: v for k, v in options.items() if k in keep})
    raise ValueError(
        f"model {type(model).__name__} has task={task!r}; expected 'semantic' or 'instance' "
        "(a segzoo model from segzoo.get_model)"
    )
