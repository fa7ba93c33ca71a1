"""Callbacks of the common fit loop (all write inside the run directory).

- `BestCheckpoint`: `model.keras` = best weights by the monitored validation
  metric, written to a temporary file then `os.replace`d (a crash never leaves
  a half-written checkpoint); its best value survives a resume.
- `BackupAndRestore`: Keras's, but never backs up a NaN epoch, and writes the backup
  to temporary files then `os.replace`s them (a run killed while it writes, e.g. at
  a session's end, resumes from the previous epoch instead of a truncated file).
- `TerminateOnNaN`: stops at the first non-finite loss; the best checkpoint
  and the backup keep the last good weights.
- `TimeLimit`: stops after a wall-clock budget (the epoch's validation still runs).
- `PredictionImages`: TensorBoard images of prediction overlays each epoch.
- `MetricsWriter`: `metrics.json` with the best and last metrics of the run.
"""

from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def save_model_atomic(model: keras.Model, path: str) -> None:
    """Saves `model` as `.keras` without its optimizer state, atomically.

    The optimizer is left out (it doubles the file for SGD with momentum and
    is not needed to evaluate, predict, export or fine-tune); resuming uses
    the backup directory instead.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}.keras")
    optimizer = model.optimizer if model.compiled else None
    try:
        if optimizer is not None:
            model.optimizer = None
        model.save(tmp)
    finally:
        if optimizer is not None:
            model.optimizer = optimizer
    os.replace(tmp, path)


class BestCheckpoint(keras.callbacks.Callback):
    """Writes `filepath` when `monitor` improves (every epoch when it is absent).

    Args:
        filepath: e.g. RUN_DIR/model.keras.
        monitor: log key, e.g. "val_mean_iou".
        mode: "max" or "min".
        state_path: JSON file keeping the best value across a resume
            (inside the backup directory, removed with it).
        enabled: False on non-chief workers (they never write).
    """

    def __init__(self, filepath, monitor="val_mean_iou", mode="max", state_path=None, enabled=True):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.filepath, self.monitor, self.mode = filepath, monitor, mode
        self.state_path, self.enabled = state_path, enabled
        self.best = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        if self.state_path and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite(logs.get("loss", 0.0)):
            return  # NaN epoch: keep the last good checkpoint
        value = logs.get(self.monitor)
        if value is None:
            improved = True  # no validation: keep the latest weights
        elif not _finite(value):
            return
        else:
            value = float(value)
            improved = self._improved(value)
        if not improved:
            return
        if value is not None:
            self.best = value
        self.best_epoch = epoch + 1
        if self.enabled:
            save_model_atomic(self.model, self.filepath)
            if self.state_path:
                os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
                with open(self.state_path + ".tmp", "w") as f:
                    json.dump({"best": self.best, "best_epoch": self.best_epoch}, f)
                os.replace(self.state_path + ".tmp", self.state_path)


class TerminateOnNaN(keras.callbacks.Callback):
    """Stops training at the first NaN/inf batch loss; `self.stopped` records it."""

    def __init__(self):
        super().__init__()
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            print(f"\nsegzoo: non-finite loss {loss} at batch {batch}; stopping "
                  "(the checkpoint keeps the last good weights)")
            self.stopped = True
            self.model.stop_training = True


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that skips NaN epochs and keeps the backup after one.

    `nan_guard` is the run's `TerminateOnNaN` instance.
    """

    def __init__(self, backup_dir, nan_guard: TerminateOnNaN | None = None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.nan_guard = nan_guard

    def _nan(self, logs):
        return (self.nan_guard is not None and self.nan_guard.stopped) or not _finite(
            (logs or {}).get("loss", 0.0)
        )

    def on_epoch_end(self, epoch, logs=None):
        if self._nan(logs):
            return
        super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self._nan(logs):
            return
        super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self.nan_guard is not None and self.nan_guard.stopped:
            return
        super().on_train_end(logs)

    def _save_model(self):
        """Weights (model and optimizer) and the epoch/batch metadata, each written
        beside its final name and moved over it."""
        os.makedirs(self.backup_dir, exist_ok=True)
        partial_weights = os.path.join(self.backup_dir, "partial.weights.h5")
        self.model.save_weights(filepath=partial_weights, overwrite=True)
        partial_metadata = self._training_metadata_path + ".partial"
        with open(partial_metadata, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(partial_weights, self._weights_path)
        os.replace(partial_metadata, self._training_metadata_path)


class TimeLimit(keras.callbacks.Callback):
    """Stops training once `minutes` of wall-clock time have passed since train begin."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = float(minutes) * 60.0
        self.stopped = False
        self._start = None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self._start >= self.seconds:
            if not self.stopped:
                print(f"\nsegzoo: time limit of {self.seconds / 60:g} min reached; stopping")
            self.stopped = True
            self.model.stop_training = True


class PredictionImages(keras.callbacks.Callback):
    """Writes prediction overlays of a few fixed images to TensorBoard each epoch.

    Args:
        log_dir: TensorBoard directory (events go to `log_dir/images`).
        images: uint8 [N, H, W, C] (one size; C = the model's channels) to segment each epoch.
        masks: uint8 [N, H, W] ground truth shown beside the prediction.
    """

    def __init__(self, log_dir, images, masks):
        super().__init__()
        self.log_dir = log_dir
        self.images = np.asarray(images, np.uint8)
        self.masks = np.asarray(masks, np.uint8)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        from segzoo.visualize import semantic_overlay

        # A direct call, not model.predict: under tf.distribute only the chief runs this,
        # and predict would start a collective the other workers never join.
        logits = self.model(self.images.astype(np.float32), training=False)
        labels = np.argmax(np.asarray(logits, np.float32), axis=-1)
        shown = self.images if self.images.shape[-1] == 3 else np.repeat(self.images, 3, -1)
        panels = [
            np.concatenate([semantic_overlay(img, gt), semantic_overlay(img, pred)], axis=1)
            for img, gt, pred in zip(shown, self.masks, labels, strict=True)
        ]
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with self._writer.as_default():
            tf.summary.image("ground_truth | prediction", np.stack(panels), step=epoch,
                             max_outputs=len(panels))
        self._writer.flush()


class MetricsWriter(keras.callbacks.Callback):
    """Writes `metrics.json` at the end of every epoch and of training.

    Content: the run's `info` dict (model, recipe, ...), `best` ({monitor,
    value, epoch} from the `BestCheckpoint`), `last` (the last epoch's logs),
    `epochs_completed`, `stopped` ("completed" | "time_limit" | "nan") and
    `train_seconds` of this process.
    """

    def __init__(self, path, info: dict, best: BestCheckpoint, nan_guard=None, time_limit=None,
                 enabled=True):
        super().__init__()
        self.path, self.info, self.best = path, dict(info), best
        self.nan_guard, self.time_limit, self.enabled = nan_guard, time_limit, enabled
        self.last, self.epochs_completed, self._start = {}, 0, time.monotonic()

    def _write(self, stopped):
        if not self.enabled:
            return
        content = {
            **self.info,
            "best": {"monitor": self.best.monitor, "value": self.best.best,
                     "epoch": self.best.best_epoch},
            "last": {k: float(v) for k, v in self.last.items() if _finite(v)},
            "epochs_completed": self.epochs_completed,
            "stopped": stopped,
            "train_seconds": round(time.monotonic() - self._start, 1),
        }
        with open(self.path + ".tmp", "w") as f:
            json.dump(content, f, indent=2)
        os.replace(self.path + ".tmp", self.path)

    def on_epoch_end(self, epoch, logs=None):
        self.last = dict(logs or {})
        self.epochs_completed = epoch + 1
        self._write("running")

    def on_train_end(self, logs=None):
        stopped = "completed"
        if self.nan_guard is not None and self.nan_guard.stopped:
            stopped = "nan"
        elif self.time_limit is not None and self.time_limit.stopped:
            stopped = "time_limit"
        self._write(stopped)
