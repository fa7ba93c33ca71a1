"""The semantic-segmentation task of the common fit loop (FCN, U-Net).

Pixel-wise softmax cross-entropy ignoring 255, streaming mean IoU, training
crops from `segzoo.data.pipeline.semantic_train_pipeline`, validation at the
original resolution; the best checkpoint is chosen by `val_mean_iou`.
"""

from __future__ import annotations

from segzoo.training.losses import get_loss
from segzoo.training.metrics import SegmentationMeanIoU
from segzoo.training.task_data import check_dataset_task, load_split


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
    def train_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """Batches (images float32 [B, S, S, 3] in [0, 255], masks int32 [B, S, S])."""
        from segzoo.data import pipeline

        check_dataset_task(info, "semantic", data_name)
        ds = load_split(data_name, split, data_dir, "semantic", self.data_args)
        return self._channels(pipeline.semantic_train_pipeline(
            ds, int(image_size), int(batch_size),
            scale_range=self.scale_range if self.augment else (1.0, 1.0),
            flip=self.augment, photometric=self.augment, seed=seed,
            shuffle_buffer=self.shuffle_buffer, drop_remainder=True,
        ))

    def _channels(self, ds):
        """RGB batches with the channels of the model's `training_input_spec` (1: grey)."""
        from segzoo.data import pipeline

        channels = int(self.model.training_input_spec.channels)
        if channels == 3:
            return ds
        return ds.map(lambda images, masks: (pipeline.to_channels(images, channels), masks))

    def val_dataset(self, info, data_name, data_dir, split, image_size, batch_size, seed):
        """Batches at original resolution (batch 1) or 255-padded (batch > 1)."""
        from segzoo.data import pipeline

        check_dataset_task(info, "semantic", data_name)
        ds = load_split(data_name, split, data_dir, "semantic", self.data_args, self.val_max_images)
        return self._channels(pipeline.semantic_eval_pipeline(ds, batch_size=int(batch_size)))

    # --- compile / evaluate ----------------------------------------------------------------
    def compile_kwargs(self) -> dict:
        return {
            "loss": get_loss(self.loss, normalize=self.normalize_loss,
                             class_weights=self.class_weights),
            "metrics": [SegmentationMeanIoU(self.num_classes)],
        }

    def callbacks(self, info, data_name, data_dir, split) -> list:
        """No task callbacks: the validation mean IoU is a compiled metric."""
        return []

    def evaluate(self, model, elements, info=None, *, max_images: int | None = None) -> dict:
        """`segzoo.evaluation.loops.evaluate_semantic` (FCN metrics at original resolution)."""
        from segzoo.evaluation.loops import evaluate_semantic

        return evaluate_semantic(model, elements, max_images=max_images)
