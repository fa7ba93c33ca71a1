"""The instance-segmentation task of the common fit loop (Mask R-CNN).

`segzoo.training.tasks.get_task(model)` returns an `InstanceTask` for models
with `task == "instance"`. It builds the training / validation pipelines
(`instance_train_pipeline`: short side `image_size`, long side at most the
model's `training_input_spec.max_size`, each batch padded to its largest
image rounded up to multiples of 32, instances padded with class-0 rows, their
masks at box resolution ("mask_crops" [B, M, 56, 56]), images without
instances kept as negatives), compiles with the optimizer only (the model computes and reports
its losses itself) and evaluates with COCO box / mask AP
(`segzoo.evaluation.loops.evaluate_instances`).

Keypoint models (`model.has_keypoints`) load their data with `keypoints=True`,
train on targets with "keypoints" [B, M, K, 3] (flips swap left/right
keypoints, `segzoo.data.keypoints.flip_indices`), and add COCO keypoint AP to
the evaluation; a model without masks (keypoint_rcnn) skips mask AP and picks
its best checkpoint by val keypoint AP.

`image_size` should equal the model's `min_size`: inference resizes the short
side to `min_size`, so training at another scale mismatches object sizes
(a warning says so).
"""

from __future__ import annotations

import warnings

import keras

from segzoo.training.task_data import check_dataset_task, load_split

# Long-side cap when a model's input spec gives none (Mask R-CNN's default).
_DEFAULT_MAX_SIZE = 1333


class InstanceTask:
    """Task object for Mask R-CNN-style models (see module docstring).

    Args:
        model: a segzoo instance model (`MaskRCNN`).
        val_max_images: evaluate on at most this many images (None = all).
        max_instances: None (default: every instance; each batch pads its instance
            rows to its own largest count) or M, a cap (the first M instances kept).
        shuffle_buffer: training shuffle buffer (images; 0 = no shuffle).
        data_args: extra keyword arguments for `segzoo.data.load`.
        scale_jitter: None or (low, high): large-scale jitter in training
            (`instance_train_pipeline`).
        mask_crop_size: C of the box-resolution training masks ("mask_crops" [B, M, C, C],
            memory instances x C^2; 56 = twice the mask head's 28); None = full-image masks.
    """

    monitor_mode = "max"

    def __init__(self, model, *, val_max_images=None, max_instances=None, shuffle_buffer=256,
                 data_args=None, scale_jitter=None, mask_crop_size=56):
        self.model = model
        self.monitor = "val_mask_ap" if model.has_masks else "val_keypoint_ap"
        self.val_max_images = val_max_images
        self.max_instances = None if max_instances is None else int(max_instances)
        self.shuffle_buffer = int(shuffle_buffer)
        self.data_args = dict(data_args or {})
        self.scale_jitter = None if scale_jitter is None else tuple(scale_jitter)
        self.mask_crop_size = mask_crop_size
        if model.has_keypoints:
            self.data_args.setdefault("keypoints", True)

    def _load(self, data_name, data_dir, split, max_images=None):
        ds = load_split(data_name, split, data_dir, "instance", self.data_args, max_images)
        if self.model.has_keypoints and "keypoints" not in ds.element_spec:
            raise ValueError(
                f"dataset {data_name!r} has no keypoints but the model has a keypoint branch; "
                "use coco (annotations/person_keypoints_{split}.json) or shapes")
        return ds

    def _check(self, info, data_name, image_size):
        check_dataset_task(info, "instance", data_name)
        min_size = self.model.training_input_spec.min_size
        largest = max(image_size) if isinstance(image_size, list | tuple) else image_size
        if min_size is not None and int(largest) != int(min_size):
            warnings.warn(
                f"training at image_size={image_size} but the model resizes to min_size={min_size} at "
                f"inference; pass the model argument min_size={largest} to match", stacklevel=3)

    def _pipeline(self, ds, image_size, batch_size, seed, flip, shuffle):
        from segzoo.data import pipeline
        from segzoo.data.keypoints import flip_indices

        max_size = self.model.training_input_spec.max_size or _DEFAULT_MAX_SIZE
        if not shuffle and isinstance(image_size, list | tuple):  # validation: the largest
            image_size = max(image_size)
        order = None
        if "keypoints" in ds.element_spec:
            num_keypoints = ds.element_spec["keypoints"].shape[1]
            order = flip_indices(self.model.keypoint_names
                                 or [f"keypoint_{i}" for i in range(num_keypoints)])
        return pipeline.instance_train_pipeline(
            ds, image_size, int(batch_size), max_size=int(max_size),
            max_instances=self.max_instances, flip=flip, seed=seed,
            shuffle_buffer=self.shuffle_buffer if shuffle else 0, drop_remainder=shuffle,
            scale_jitter=self.scale_jitter if shuffle else None, keypoint_flip_indices=order,
            mask_crop_size=self.mask_crop_size)

    def train_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """(images float32 [B, H, W, 3], targets {"boxes", "classes", "mask_crops"}) batches."""
        self._check(info, data_name, image_size)
        ds = self._load(data_name, data_dir, split)
        return self._pipeline(ds, image_size, batch_size, seed, flip=True, shuffle=True)

    def val_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """Validation batches in the training format (for the validation losses)."""
        self._check(info, data_name, image_size)
        ds = self._load(data_name, data_dir, split, self.val_max_images)
        return self._pipeline(ds, image_size, batch_size, seed, flip=False, shuffle=False)

    def compile_kwargs(self) -> dict:
        return {}

    def callbacks(self, info, data_name, data_dir, split) -> list:
        """`[MaskAPCallback]` writing "val_mask_ap" (and the other AP keys) into the epoch logs.

        The fit loop must put these before the checkpoint callback that monitors
        `self.monitor`.
        """
        ds = self._load(data_name, data_dir, split, self.val_max_images)
        return [MaskAPCallback(self, ds, info)]

    def evaluate(self, model, elements, info=None, *, max_images=None) -> dict:
        """COCO AP over raw dataset elements, each image at its original size.

        Returns `InstanceEvaluator.compute()` (box_ap, mask_ap, mask_ap50, ...) plus `num_images`.
        """
        from segzoo.evaluation.loops import evaluate_instances

        return evaluate_instances(model, elements, info, max_images=max_images)[0]


class MaskAPCallback(keras.callbacks.Callback):
    """Adds COCO AP on a validation split to the epoch logs as `val_<key>` (val_mask_ap, val_box_ap, ...).

    Args:
        task: the `InstanceTask` (its `evaluate` runs).
        dataset: unbatched raw instance elements (original sizes).
        info: the dataset's `DatasetInfo` (category ids).
    """

    KEYS = ("box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75",
            "keypoint_ap", "keypoint_ap50", "keypoint_ap75")

    def __init__(self, task, dataset, info=None):
        super().__init__()
        self.task, self.dataset, self.info = task, dataset, info

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        metrics = self.task.evaluate(self.model, self.dataset.as_numpy_iterator(), self.info)
        for key in self.KEYS:
            if key in metrics:  # the model's branches: no mask AP without masks, ...
                value = metrics[key]
                logs[f"val_{key}"] = float("nan") if value is None else float(value)
