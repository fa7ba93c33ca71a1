"""The callbacks of one `segzoo train` run, in the order the fit loop needs them.

    nan guard -> time limit -> backup/resume -> task callbacks (e.g. COCO mask AP,
    which write their metrics into the epoch logs) -> best checkpoint (reads
    them) -> CSV log, TensorBoard, prediction images (chief only) ->
    metrics.json -> the caller's extra callbacks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os

import keras
import numpy as np

from segzoo.training import callbacks as cb


@dataclasses.dataclass
class RunCallbacks:
    """The callback list and the best-checkpoint callback (its best value ends the run's report)."""

    callbacks: list
    best: cb.BestCheckpoint


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def preview_batch(dataset, count=4):
    """Up to `count` (image, mask) pairs of one size from a batch-1 validation dataset."""
    images, masks = [], []
    for image, mask in dataset.take(count * 4):
        image, mask = image.numpy()[0], mask.numpy()[0]
        if images and image.shape != images[0].shape:
            continue
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(mask.astype(np.uint8))
        if len(images) == count:
            break
    return np.stack(images), np.stack(masks)


def build_callbacks(out, backup_dir, *, task, run_info: dict, val_ds, task_callbacks=(),
                    time_limit=None, is_chief=True, resuming=False, extra=()) -> RunCallbacks:
    """Every callback of a run writing into the run directory `out`.

    Args:
        out: the run directory (model.keras, train_log.csv, tensorboard/, metrics.json).
        backup_dir: BackupAndRestore state (and the best value across resumes).
        task: the task object (`monitor`, `monitor_mode`).
        run_info: what metrics.json records about the run.
        val_ds: the validation dataset or None (then every epoch is "best").
        task_callbacks: the task's callbacks (`task.callbacks(...)`).
        time_limit: minutes, or None.
        is_chief: only the chief writes the checkpoint, logs and metrics.
        resuming: append to the CSV log.
        extra: the caller's callbacks, last.
    """
    nan_guard = cb.TerminateOnNaN()
    limit = cb.TimeLimit(time_limit) if time_limit else None
    best = cb.BestCheckpoint(
        os.path.join(out, "model.keras"), monitor=task.monitor if val_ds is not None else "-",
        mode=task.monitor_mode, state_path=os.path.join(backup_dir, "best.json"), enabled=is_chief,
    )
    callbacks = [
        nan_guard,
        *([limit] if limit else []),
        cb.BackupAndRestore(backup_dir, nan_guard=nan_guard),
        *task_callbacks,
        best,
    ]
    if is_chief:
        log_dir = os.path.join(out, "tensorboard")
        callbacks.append(keras.callbacks.CSVLogger(os.path.join(out, "train_log.csv"), append=resuming))
        if tensorboard_available():
            callbacks.append(keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch"))
            if task.model.task == "semantic" and val_ds is not None:
                images, masks = preview_batch(val_ds)
                callbacks.append(cb.PredictionImages(log_dir, images, masks))
        else:
            print("segzoo train: the tensorboard package is not installed; no TensorBoard logs")
    writer = cb.MetricsWriter(os.path.join(out, "metrics.json"), run_info, best,
                              nan_guard=nan_guard, time_limit=limit, enabled=is_chief)
    return RunCallbacks(callbacks=[*callbacks, writer, *extra], best=best)
