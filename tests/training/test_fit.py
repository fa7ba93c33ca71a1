"""The common fit loop end to end on tiny data: run directory, checkpoint, resume, NaN, time limit."""

import csv
import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from segzoo.commands.model_args import parse_model_args
from segzoo.models.base import load_checkpoint
from segzoo.training import recipes
from segzoo.training.fit import resolve_recipe, train
from tests.training import tiny_model  # registers "tiny_segmenter"

TINY = tiny_model.tiny_recipe()


def _config(out, **kwargs):
    return {"model": "tiny_segmenter", "recipe": TINY, "out": str(out), "verbose": 0, **kwargs}


class _Interrupt(Exception):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed process right after epoch `epoch` (0-based) was backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt()


class _RecordEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_parse_model_args_literals():
    assert parse_model_args([("base_filters", "16"), ("padding", "valid"),
                             ("backbone_weights", "None"), ("batch_norm", "True"),
                             ("sizes", "(1, 2)")]) == {
        "base_filters": 16, "padding": "valid", "backbone_weights": None, "batch_norm": True,
        "sizes": (1, 2)}


def test_recipe_selection_and_overrides():
    recipe, spec = resolve_recipe({"model": "unet", "data": "shapes", "epochs": 2,
                                   "model_arg": [("base_filters", 8)]})
    assert recipe.name == "shapes_unet" and recipe.epochs == 2
    assert recipe.model_args["base_filters"] == 8 and spec.task == "semantic"
    fcn = recipes.get_recipe("voc_fcn8s")
    assert (fcn.optimizer, fcn.momentum, fcn.weight_decay, fcn.batch_size) == ("sgd", 0.99, 5e-4, 1)
    assert fcn.normalize_loss is False and fcn.learning_rate == 1e-14
    with pytest.raises(ValueError, match="voc_fcn8s"):
        recipes.get_recipe("voc_fcn8")
    with pytest.raises(ValueError, match="no field"):
        recipes.apply_overrides(fcn, epoch=3)


def test_run_directory_and_checkpoint(tmp_path):
    result = train(_config(tmp_path / "run"))
    run = tmp_path / "run"
    assert sorted(os.listdir(run)) == ["metrics.json", "model.keras", "tensorboard", "train_log.csv"]
    # The best checkpoint loads in safe mode, carries the class names, and has the best
    # epoch's weights (not necessarily the last).
    model = load_checkpoint(run / "model.keras")
    assert model.class_names == ["background", "circle", "rectangle", "triangle"]
    with open(run / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    values = [float(r["val_mean_iou"]) for r in rows]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best"]["value"] == pytest.approx(max(values), rel=1e-6)
    assert metrics["best"]["epoch"] == int(np.argmax(values)) + 1
    assert metrics["stopped"] == "completed" and metrics["epochs_completed"] == 3
    assert result.best_value == pytest.approx(max(values), rel=1e-6)
    # TensorBoard scalars and prediction images were written.
    tb_files = [os.path.join(d, f) for d, _, fs in os.walk(run / "tensorboard") for f in fs]
    assert any("images" in f for f in tb_files) and any("train" in f for f in tb_files)


def test_resume_after_kill_continues_and_matches_uninterrupted(tmp_path):
    reference = train(_config(tmp_path / "a")).model.get_weights()

    with pytest.raises(_Interrupt):
        train(_config(tmp_path / "b"), extra_callbacks=[_KillAfterEpoch(1)])
    assert os.path.isdir(tmp_path / "b" / "backup")
    record = _RecordEpochs()
    resumed = train(_config(tmp_path / "b"), extra_callbacks=[record])
    assert record.epochs == [2]  # continued at the third epoch
    for got, want in zip(resumed.model.get_weights(), reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with open(tmp_path / "b" / "train_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert not os.path.exists(tmp_path / "b" / "backup")  # removed once the run completed


def test_kill_while_the_backup_is_written_resumes_from_the_previous_epoch(tmp_path, monkeypatch):
    """A process killed half-way through writing epoch 2's backup (a session ending) leaves
    epoch 1's intact: the rerun continues from there and ends with the uninterrupted weights."""
    reference = train(_config(tmp_path / "a")).model.get_weights()
    original = keras.Model.save_weights
    backups = []

    def killed_on_the_second_backup(self, filepath, *args, **kwargs):
        if "backup" in str(filepath):
            backups.append(filepath)
            if len(backups) == 2:
                with open(filepath, "wb") as f:
                    f.write(b"\x89HDF truncated")
                raise _Interrupt()
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", killed_on_the_second_backup)
    with pytest.raises(_Interrupt):
        train(_config(tmp_path / "b"))
    monkeypatch.setattr(keras.Model, "save_weights", original)
    record = _RecordEpochs()
    resumed = train(_config(tmp_path / "b"), extra_callbacks=[record])
    assert record.epochs == [1, 2]  # epoch 0's backup was the last complete one
    for got, want in zip(resumed.model.get_weights(), reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


class _PoisonAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            self.model.get_layer("score").kernel.assign(
                np.full(self.model.get_layer("score").kernel.shape, np.nan, np.float32))


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(_config(run), extra_callbacks=[_PoisonAfterEpoch()])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "nan" and metrics["best"]["epoch"] == 1
    model = load_checkpoint(run / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_time_limit_stops_early(tmp_path):
    run = tmp_path / "run"
    train(_config(run, time_limit=1e-6))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stopped"] == "time_limit" and metrics["epochs_completed"] == 1
    assert os.path.exists(run / "model.keras")


def test_task_mismatch_is_a_clear_error(tmp_path):
    instance_view = dataclasses.replace(TINY, data_args={"task": "instance", "num_images": 4})
    with pytest.raises(ValueError, match="semantic model but dataset"):
        train(_config(tmp_path, recipe=instance_view))


def test_mixed_precision_and_jit_compile(tmp_path):
    result = train(_config(tmp_path / "run", epochs=1, mixed_precision=True, jit_compile=True,
                           recipe=dataclasses.replace(TINY, epochs=1)))
    assert result.info["mixed_precision"] and result.info["jit_compile"]
    assert result.model.get_layer("conv1").compute_dtype == "float16"
    assert result.model.get_layer("conv1").kernel.dtype == "float32"  # float32 master weights
    assert isinstance(result.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(result.best_value)
    # The global policy is restored after the run.
    assert keras.mixed_precision.dtype_policy().name == "float32"
    model = load_checkpoint(tmp_path / "run" / "model.keras")
    assert model.class_names[0] == "background"


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]


def test_init_from_checkpoint_starts_from_its_weights(tmp_path):
    train(_config(tmp_path / "first", recipe=dataclasses.replace(TINY, epochs=1)))
    source = load_checkpoint(tmp_path / "first" / "model.keras").get_weights()
    probe = _WeightsAtStart()
    train(_config(tmp_path / "second", recipe=dataclasses.replace(TINY, epochs=1),
                  init_from=str(tmp_path / "first" / "model.keras")), extra_callbacks=[probe])
    for got, want in zip(probe.weights, source, strict=True):
        np.testing.assert_array_equal(got, want)
