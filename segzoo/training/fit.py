"""The common fit loop: recipe -> model, data, loss, optimizer, schedule, callbacks -> `model.fit`.

    from segzoo.training.fit import train
    train({"model": "unet", "data": "shapes", "epochs": 5, "model_arg": [("base_filters", "16")]})

`config` is the `segzoo train` argparse namespace or any mapping / object with
the same names (missing ones take the recipe's value). Every model trains
through this one loop; the task object (`segzoo.training.tasks.get_task`)
supplies what differs between semantic and instance models, and instance
models bring their own `train_step` / `compute_loss`.

Run directory (`--out`, default `runs/MODEL-DATA`):

    model.keras      best weights by the validation metric (atomic write; no optimizer)
    train_log.csv    one row per epoch (appended across resumes)
    tensorboard/     scalars (train/validation) and images/ (prediction overlays)
    metrics.json     run info, best and last metrics, why it stopped
    backup/          BackupAndRestore state: rerunning the same command resumes here
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import sys
import time

import keras
import numpy as np

from segzoo.training import callbacks as cb
from segzoo.training import defaults
from segzoo.training.distribute import get_strategy, keras_multi_worker_fixes, worker_info
from segzoo.training.optimizers import build_optimizer
from segzoo.training.recipes import Recipe, apply_overrides, default_recipe_name, get_recipe
from segzoo.training.schedules import PolyWarmup
from segzoo.training.tasks import get_task


def _get(config, name, default=None):
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def parse_model_args(pairs) -> dict:
    """[(name, text), ...] or {name: value} -> kwargs; texts are Python literals when they parse.

    `base_filters=16` -> 16, `padding=valid` -> "valid", `backbone_weights=None` -> None.
    """
    if isinstance(pairs, dict):
        pairs = pairs.items()
    kwargs = {}
    for name, value in pairs or ():
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        kwargs[name] = value
    return kwargs


def resolve_recipe(config):
    """The recipe of `config.recipe` (a name or a `Recipe`; default from model and data), flags applied."""
    import segzoo
    import segzoo.data

    model_name = _get(config, "model")
    spec = segzoo.get_model_spec(model_name)
    data = _get(config, "data") or "shapes"
    recipe = _get(config, "recipe") or _default_recipe(model_name, data, spec.task,
                                                       _get(config, "data_dir"))
    if not isinstance(recipe, Recipe):
        recipe = get_recipe(recipe)
    if _get(config, "data") and data != recipe.data:
        recipe = dataclasses.replace(recipe, data=data)
    tasks = segzoo.data.dataset_tasks(recipe.data)
    if tasks and spec.task in tasks and "task" not in recipe.data_args:  # shapes, labelme
        recipe = dataclasses.replace(recipe, data_args={**recipe.data_args, "task": spec.task})
    return apply_overrides(
        recipe,
        train_split=_get(config, "train_split"),
        val_split=_get(config, "val_split"),
        epochs=_get(config, "epochs"),
        steps_per_epoch=_get(config, "steps_per_epoch"),
        batch_size=_get(config, "batch_size"),
        image_size=_get(config, "image_size"),
        learning_rate=_get(config, "learning_rate"),
        optimizer=_get(config, "optimizer"),
        init_from=_get(config, "init_from"),
        loss=_get(config, "loss"),
        scale_jitter=_get(config, "scale_jitter"),
        model_args=_model_args(config, spec),
    ), spec


def _default_recipe(model_name, data, task, data_dir) -> str:
    """`default_recipe_name`, given the data's splits: `{data}_{model}` only where the
    data has that recipe's training split (the COCO release recipe is not for every
    COCO-format set)."""
    import segzoo.data

    name = default_recipe_name(model_name, data, task)
    if name == task:
        return name
    try:
        splits = segzoo.data.get_info(data, data_dir=data_dir, **get_recipe(name).data_args).splits
    except (ValueError, FileNotFoundError):
        return name  # train() reports the data's problem
    return default_recipe_name(model_name, data, task, splits)


def _model_args(config, spec) -> dict | None:
    """`--model-arg` pairs, plus `--trainable-layers` for instance models."""
    kwargs = parse_model_args(_get(config, "model_arg"))
    trainable_layers = _get(config, "trainable_layers")
    if trainable_layers:
        if spec.task != "instance":
            raise ValueError(
                f"--trainable-layers applies to backbone stages of instance models; "
                f"{spec.name!r} is a {spec.task} model"
            )
        kwargs.setdefault("trainable_layers", trainable_layers)
    return kwargs or None


def build_model(model_name: str, info, model_args: dict):
    """`segzoo.get_model` with the dataset's classes (names, and ids for instance models)."""
    import segzoo

    kwargs = dict(model_args)
    kwargs.setdefault("num_classes", info.num_classes)
    if info.task == "semantic":
        kwargs.setdefault("class_names", list(info.class_names))
    else:
        kwargs.setdefault("class_names", ["background", *info.class_names])
        if info.category_ids is not None:
            kwargs.setdefault("category_ids", list(info.category_ids))
    return segzoo.get_model(model_name, **kwargs)


def _count_steps(dataset) -> int:
    steps = int(dataset.cardinality())
    if steps >= 0:
        return steps
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


def _preview_batch(dataset, count=4):
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


@dataclasses.dataclass
class TrainResult:
    """What `train` returns: the trained model (last weights), the run directory, the best value."""

    model: keras.Model
    run_dir: str
    monitor: str
    best_value: float | None
    best_epoch: int | None
    info: dict


def train(config, *, extra_callbacks=()) -> TrainResult:
    """Trains a model as `segzoo train` does.

    Args:
        config: argparse namespace / dict with `model` and optional `recipe`,
            `data`, `data_dir`, `train_split`, `val_split`, `epochs`,
            `steps_per_epoch`, `batch_size`, `image_size`, `learning_rate`,
            `optimizer`, `out`, `model_arg` ([(name, text)]), `init_from`,
            `strategy`, `mixed_precision`, `jit_compile`, `seed`, `time_limit`
            (minutes), `verbose`.
        extra_callbacks: more Keras callbacks (appended after segzoo's).

    Raises:
        ValueError: unknown model / recipe / dataset / strategy, or a model and
            dataset of different tasks.
    """
    import segzoo.data

    # First: MultiWorkerMirroredStrategy must configure collectives before TensorFlow runs ops.
    strategy = get_strategy(_get(config, "strategy") or "default")
    recipe, spec = resolve_recipe(config)
    model_name = _get(config, "model")
    data_dir = _get(config, "data_dir")
    seed = int(_get(config, "seed", 0) or 0)
    out = _get(config, "out") or os.path.join("runs", f"{model_name}-{recipe.data}")
    verbose = _get(config, "verbose") or ("auto" if sys.stdout.isatty() else 2)
    keras.utils.set_random_seed(seed)

    info = segzoo.data.get_info(recipe.data, data_dir=data_dir, **recipe.data_args)
    if info.task != spec.task:
        raise ValueError(
            f"model {model_name!r} is a {spec.task} model but dataset {recipe.data!r} is "
            f"{info.task}; choose a {spec.task} dataset"
        )
    recipe, notes = defaults.choose_splits(recipe, info.splits)
    defaults.check_image_size(recipe, spec.task)
    if spec.task == "instance":
        recipe = defaults.instance_scale(recipe)
    recipe, channel_notes = defaults.input_channels(recipe, model_name, info.image_channels)
    notes += channel_notes
    recipe, pretrained = defaults.pretrained_fallback(recipe, model_name)
    if pretrained:
        notes.append(pretrained["reason"])
    scan = None
    if spec.task == "semantic" and recipe.scan_data:
        elements = segzoo.data.load(recipe.data, recipe.train_split, data_dir=data_dir,
                                    **recipe.data_args).as_numpy_iterator()
        recipe, scan = defaults.semantic_data_defaults(
            recipe, defaults.scan_semantic(elements, info.num_classes))
        notes.append(defaults.describe_scan(scan))
    is_chief, worker_index = worker_info(strategy)
    os.makedirs(out, exist_ok=True)
    backup_dir = os.path.join(out, "backup")
    if not is_chief:  # other workers keep their own backups, and write nothing else
        backup_dir = os.path.join(backup_dir, f"worker_{worker_index}")
    resuming = os.path.isdir(backup_dir)

    previous_policy = keras.mixed_precision.dtype_policy()
    if _get(config, "mixed_precision"):
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        with strategy.scope():
            model = build_model(model_name, info, recipe.model_args)
            if recipe.init_from:
                from segzoo.models.weights import load_weights_by_name

                # Layers whose shapes differ (another class count) are skipped and reported.
                load_weights_by_name(model, recipe.init_from, verbose=is_chief)
            task = _make_task(model, recipe)
            train_ds = task.train_dataset(info, recipe.data, data_dir, recipe.train_split,
                                          recipe.image_size, recipe.batch_size, seed)
            val_ds = None
            if recipe.val_split:
                # One image per replica: batch 1 (original size) in one process; under
                # tf.distribute every replica needs an image, so images are padded with 255
                # (ignored by the metric) to a common size. `segzoo eval` is always exact.
                val_batch = recipe.val_batch_size * strategy.num_replicas_in_sync
                val_ds = task.val_dataset(info, recipe.data, data_dir, recipe.val_split,
                                          recipe.image_size, val_batch, seed)
            steps_per_epoch = recipe.steps_per_epoch
            if steps_per_epoch:
                train_ds = train_ds.repeat()
                epoch_steps = int(steps_per_epoch)
            else:
                epoch_steps = _count_steps(train_ds)
                if epoch_steps == 0:
                    raise ValueError(
                        f"training split {recipe.train_split!r} of {recipe.data!r} gives no batch "
                        f"of {recipe.batch_size}; lower --batch-size or add data"
                    )
            recipe, schedule_notes = defaults.scale_schedule(recipe, epoch_steps)
            notes += schedule_notes
            total_steps = max(1, epoch_steps * recipe.epochs)
            warmup = min(recipe.warmup_steps, total_steps)
            schedule = PolyWarmup(recipe.learning_rate, total_steps, warmup,
                                  power=recipe.poly_power if recipe.schedule == "poly" else 0.0)
            optimizer = build_optimizer(recipe.optimizer, schedule, momentum=recipe.momentum,
                                        weight_decay=recipe.weight_decay, clipnorm=recipe.clipnorm)
            jit = bool(_get(config, "jit_compile")) and getattr(model, "supports_jit", True)
            if _get(config, "jit_compile") and not jit:
                print(f"segzoo train: {model_name} has ops without XLA kernels; --jit-compile ignored")
            model.compile(optimizer=optimizer, jit_compile=jit, **task.compile_kwargs())

        nan_guard = cb.TerminateOnNaN()
        time_limit = cb.TimeLimit(_get(config, "time_limit")) if _get(config, "time_limit") else None
        best = cb.BestCheckpoint(
            os.path.join(out, "model.keras"), monitor=task.monitor if val_ds is not None else "-",
            mode=getattr(task, "monitor_mode", "max"),
            state_path=os.path.join(backup_dir, "best.json"), enabled=is_chief,
        )
        run_info = {
            "model": model_name, "task": spec.task, "data": recipe.data,
            "recipe": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(recipe).items()},
            "class_names": list(model.class_names), "strategy": _get(config, "strategy") or "default",
            "replicas": strategy.num_replicas_in_sync,
            "mixed_precision": bool(_get(config, "mixed_precision")), "jit_compile": jit,
            "seed": seed, "steps_per_epoch": epoch_steps,
            "defaults": notes, "backbone_init": pretrained, "data_scan": scan,
        }
        # Task callbacks (e.g. Mask R-CNN's COCO mask AP on the validation split) write
        # their metrics into the epoch logs, so they run before the checkpoint reads them.
        task_callbacks = []
        if val_ds is not None and hasattr(task, "callbacks"):
            task_callbacks = task.callbacks(info, recipe.data, data_dir, recipe.val_split)
        callbacks = [
            nan_guard,
            *([time_limit] if time_limit else []),
            cb.BackupAndRestore(backup_dir, nan_guard=nan_guard),
            *task_callbacks,
            best,
        ]
        if is_chief:
            log_dir = os.path.join(out, "tensorboard")
            callbacks.append(
                keras.callbacks.CSVLogger(os.path.join(out, "train_log.csv"), append=resuming))
            if _tensorboard_available():
                callbacks.append(
                    keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch"))
            else:
                print("segzoo train: the tensorboard package is not installed; no TensorBoard logs")
            if spec.task == "semantic" and val_ds is not None and _tensorboard_available():
                images, masks = _preview_batch(val_ds)
                callbacks.append(cb.PredictionImages(log_dir, images, masks))
        writer = cb.MetricsWriter(os.path.join(out, "metrics.json"), run_info, best,
                                  nan_guard=nan_guard, time_limit=time_limit, enabled=is_chief)
        callbacks += [writer, *extra_callbacks]

        if is_chief:
            for note in notes:
                print(f"segzoo train: {note}")
            print(f"segzoo train: {model_name} on {recipe.data} (recipe {recipe.name}), "
                  f"{recipe.epochs} epochs x {epoch_steps} steps, batch {recipe.batch_size}, "
                  f"{strategy.num_replicas_in_sync} replica(s) -> {out}")
        start = time.monotonic()
        with keras_multi_worker_fixes(model, strategy):
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=recipe.epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                shuffle=False,
                verbose=verbose if is_chief else 0,
            )
        elapsed = time.monotonic() - start
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)

    if is_chief:
        value = best.best
        shown = "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
        print(f"segzoo train: done in {elapsed / 60:.1f} min; best {best.monitor} = {shown} "
              f"(epoch {best.best_epoch}); checkpoint {os.path.join(out, 'model.keras')}")
    return TrainResult(model=model, run_dir=out, monitor=best.monitor, best_value=best.best,
                       best_epoch=best.best_epoch, info=run_info)


def _tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _make_task(model, recipe):
    if getattr(model, "task", None) == "semantic":
        return get_task(model, augment=recipe.augment, scale_range=recipe.scale_range,
                        normalize_loss=recipe.normalize_loss, val_max_images=recipe.val_max_images,
                        data_args=recipe.data_args, loss=recipe.loss,
                        class_weights=recipe.class_weights)
    return get_task(model, val_max_images=recipe.val_max_images, data_args=recipe.data_args,
                    scale_jitter=recipe.scale_jitter)


__all__ = ["TrainResult", "train", "resolve_recipe", "parse_model_args", "build_model"]
