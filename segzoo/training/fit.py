"""The common fit loop: recipe -> model, data, loss, optimizer, schedule, callbacks -> `model.fit`.

    from segzoo.training.fit import train
    train({"model": "unet", "data": "shapes", "epochs": 5, "model_args": {"base_filters": 16}})

`config` is the `segzoo train` argparse namespace or any mapping / object with
the same names (missing ones take the recipe's value; `segzoo.training.setup`).
Every model trains through this one loop; the task object
(`segzoo.training.tasks.get_task`) supplies what differs between semantic and
instance models, and instance models bring their own `train_step` /
`compute_loss`. The optimizer is `optimizers.build_training_optimizer`, the
callbacks `run_callbacks.build_callbacks`.

Run directory (`--out`, default `runs/MODEL-DATA`):

    model.keras      best weights by the validation metric (atomic write; no optimizer)
    train_log.csv    one row per epoch (appended across resumes)
    tensorboard/     scalars (train/validation) and images/ (prediction overlays)
    metrics.json     run info, best and last metrics, why it stopped
    backup/          BackupAndRestore state: rerunning the same command resumes here
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import keras
import numpy as np

from segzoo.data.service import distribute, input_shard, sharded_reading, without_auto_shard
from segzoo.training import defaults
from segzoo.training.distribute import get_strategy, keras_multi_worker_fixes, worker_info
from segzoo.training.optimizers import build_training_optimizer
from segzoo.training.plot_callback import evaluation_plots_callback
from segzoo.training.precision import resolve_precision, set_precision
from segzoo.training.run_callbacks import build_callbacks, tensorboard_available
from segzoo.training.setup import build_model, config_value, resolve_recipe
from segzoo.training.task_data import task_data_args
from segzoo.training.tasks import get_task


def _count_steps(dataset) -> int:
    steps = int(dataset.cardinality())
    if steps >= 0:
        return steps
    return int(dataset.reduce(np.int64(0), lambda count, _: count + 1))


@dataclasses.dataclass
class TrainResult:
    """What `train` returns: the trained model (last weights), the run directory, the best value."""

    model: keras.Model
    run_dir: str
    monitor: str
    best_value: float | None
    best_epoch: int | None
    info: dict


def _task(model, recipe):
    if model.task == "instance":
        return get_task(model, val_max_images=recipe.val_max_images, data_args=recipe.data_args,
                        scale_jitter=recipe.scale_jitter)
    return get_task(model, augment=recipe.augment, scale_range=recipe.scale_range,
                    normalize_loss=recipe.normalize_loss, val_max_images=recipe.val_max_images,
                    data_args=recipe.data_args, loss=recipe.loss,
                    class_weights=recipe.class_weights)


def _fit_to_data(recipe, spec, model_name, info, data_dir):
    """`segzoo.training.defaults` applied in order: (recipe, notes, record for metrics.json)."""
    from segzoo.training.task_data import load_split

    recipe, notes = defaults.choose_splits(recipe, info.splits)
    defaults.check_image_size(recipe, spec.task)
    scan = None
    if spec.task == "instance":
        if recipe.scan_data:
            elements = load_split(recipe.data, recipe.train_split, data_dir, "instance",
                                  recipe.data_args, defaults.SCAN_IMAGES).as_numpy_iterator()
            recipe, scan = defaults.instance_data_defaults(recipe, elements)
            if "image_size" in scan["chosen"]:
                notes.append(f"image size {recipe.image_size}: the median short side of "
                             f"{scan['images_scanned']} training images is "
                             f"{scan['median_short_side']}")
            if "anchor_sizes" in scan["chosen"]:
                notes.append(f"anchor sizes {tuple(scan['chosen']['anchor_sizes'])}: the median "
                             f"object is {scan['median_object_size']} px at the training scale")
            if "max_detections" in scan["chosen"]:
                notes.append(f"max_detections {scan['chosen']['max_detections']}: a training "
                             f"image holds {scan['max_instances_per_image']} instances")
        chosen_rois = "box_batch_size_per_image" not in recipe.model_args
        recipe = defaults.instance_scale(recipe)
        rois = recipe.model_args["box_batch_size_per_image"]
        if chosen_rois and rois != defaults.rois_per_image(800):
            notes.append(f"{rois} RoIs per image (the paper's 512 at 800 px, scaled with the "
                         f"image area at {defaults.largest_size(recipe.image_size)} px, at least 128)")
    recipe, channel_notes = defaults.input_channels(recipe, model_name, info.image_channels)
    notes += channel_notes
    recipe, pretrained = defaults.pretrained_fallback(recipe, model_name)
    if pretrained:
        notes.append(pretrained["reason"])
    if spec.task == "semantic" and recipe.scan_data:
        split = load_split(recipe.data, recipe.train_split, data_dir, "semantic", recipe.data_args)
        count = int(split.cardinality())
        elements = split.take(defaults.SCAN_IMAGES).as_numpy_iterator()
        recipe, scan = defaults.semantic_data_defaults(
            recipe, defaults.scan_semantic(elements, info.num_classes), count if count > 0 else None)
        notes.append(defaults.describe_scan(scan))
    return recipe, notes, {"backbone_init": pretrained, "data_scan": scan}


def train(config, *, extra_callbacks=()) -> TrainResult:
    """Trains a model as `segzoo train` does.

    Args:
        config: argparse namespace / dict with `model` and optional `recipe`,
            `data`, `data_dir`, `train_split`, `val_split`, `epochs`,
            `steps_per_epoch`, `batch_size`, `image_size`, `learning_rate`,
            `optimizer`, `out`, `model_args` ({name: value}) or `model_arg`
            ([(name, value)]), `init_from`, `trainable_layers`, `strategy`,
            `precision` (float32 | bfloat16 | float16), `mixed_precision` (= float16),
            `jit_compile`, `data_service` (grpc://HOST:PORT), `seed`, `time_limit`
            (minutes), `verbose`.
        extra_callbacks: more Keras callbacks (appended after segzoo's).

    Raises:
        ValueError: unknown model / recipe / dataset / strategy, or a model and
            dataset of different tasks.
    """
    import segzoo.data

    def get(name, default=None):
        return config_value(config, name, default)

    # First: MultiWorkerMirroredStrategy must configure collectives before TensorFlow runs ops.
    strategy = get_strategy(get("strategy") or "default")
    recipe, spec = resolve_recipe(config)
    model_name = get("model")
    data_dir = get("data_dir")
    seed = int(get("seed", 0) or 0)
    out = get("out") or os.path.join("runs", f"{model_name}-{recipe.data}")
    verbose = get("verbose") or ("auto" if sys.stdout.isatty() else 2)
    keras.utils.set_random_seed(seed)

    info = segzoo.data.get_info(recipe.data, data_dir=data_dir,
                                **task_data_args(recipe.data, spec.task, recipe.data_args))
    if info.task != spec.task:
        raise ValueError(
            f"model {model_name!r} is a {spec.task} model but dataset {recipe.data!r} is "
            f"{info.task}; choose a {spec.task} dataset"
        )
    recipe, notes, records = _fit_to_data(recipe, spec, model_name, info, data_dir)
    is_chief, worker_index = worker_info(strategy)
    os.makedirs(out, exist_ok=True)
    backup_dir = os.path.join(out, "backup")
    if not is_chief:  # other workers keep their own backups, and write nothing else
        backup_dir = os.path.join(backup_dir, f"worker_{worker_index}")
    resuming = os.path.isdir(backup_dir)

    precision = resolve_precision(get("precision"), get("mixed_precision"))
    previous_policy = set_precision(precision)
    try:
        with strategy.scope():
            model = build_model(model_name, info, recipe.model_args)
            if recipe.init_from:
                from segzoo.models.weights import load_weights_by_name

                # Layers whose shapes differ (another class count) are skipped and reported.
                load_weights_by_name(model, recipe.init_from, verbose=is_chief,
                                     skip=recipe.init_skip)
            task = _task(model, recipe)
            shard = input_shard(strategy)  # each worker reads its own files
            with sharded_reading(*(shard or (1, 0))):
                train_ds = task.train_dataset(info, recipe.data, data_dir, recipe.train_split,
                                              recipe.image_size, recipe.batch_size, seed)
            if shard:
                train_ds = without_auto_shard(train_ds)
            if get("data_service"):  # preprocessing on the tf.data service's workers
                train_ds = without_auto_shard(distribute(train_ds, get("data_service")))
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
                        f"of {recipe.batch_size}; lower batch_size or add data"
                    )
            recipe, schedule_notes = defaults.scale_schedule(recipe, epoch_steps)
            notes += schedule_notes
            optimizer = build_training_optimizer(recipe, epoch_steps * recipe.epochs)
            jit = bool(get("jit_compile")) and model.supports_jit
            if get("jit_compile") and not jit:
                print(f"segzoo train: {model_name} has ops without XLA kernels; --jit-compile ignored")
            model.compile(optimizer=optimizer, jit_compile=jit, **task.compile_kwargs())

        run_info = {
            "model": model_name, "task": spec.task, "data": recipe.data,
            "recipe": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(recipe).items()},
            "class_names": list(model.class_names), "strategy": get("strategy") or "default",
            "replicas": strategy.num_replicas_in_sync,
            "mixed_precision": precision == "float16", "precision": precision, "jit_compile": jit,
            "seed": seed, "steps_per_epoch": epoch_steps, "defaults": notes, **records,
            "data_service": get("data_service"), "input_shard": list(shard) if shard else None,
        }
        task_callbacks = []
        if val_ds is not None:
            task_callbacks = task.callbacks(info, recipe.data, data_dir, recipe.val_split)
        plots = []  # the evaluation figures of the best checkpoint, in TensorBoard at the end
        if val_ds is not None and is_chief and tensorboard_available():
            plots = [evaluation_plots_callback(out, recipe, data_dir, info, spec.task)]
        run = build_callbacks(out, backup_dir, task=task, run_info=run_info, val_ds=val_ds,
                              task_callbacks=task_callbacks, time_limit=get("time_limit"),
                              is_chief=is_chief, resuming=resuming,
                              extra=[*plots, *extra_callbacks])
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
                callbacks=run.callbacks,
                shuffle=False,
                verbose=verbose if is_chief else 0,
            )
        elapsed = time.monotonic() - start
    finally:
        keras.mixed_precision.set_dtype_policy(previous_policy)

    best = run.best
    if is_chief:
        value = best.best
        shown = "-" if value is None or not math.isfinite(value) else f"{value:.4f}"
        print(f"segzoo train: done in {elapsed / 60:.1f} min; best {best.monitor} = {shown} "
              f"(epoch {best.best_epoch}); checkpoint {os.path.join(out, 'model.keras')}")
    return TrainResult(model=model, run_dir=out, monitor=best.monitor, best_value=best.best,
                       best_epoch=best.best_epoch, info=run_info)


__all__ = ["TrainResult", "build_model", "resolve_recipe", "train"]
