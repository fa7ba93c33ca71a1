"""Runs an ablation: every variant x seed through the common fit loop, then `segzoo eval`'s evaluator.

    from segzoo.ablation.runner import run_ablation
    report = run_ablation("fcn", out="runs/ablate-fcn", minutes=10, seeds=1)

Layout of OUT:

    plan.json                      the settings (a resume must use the same)
    runs/KEY/seedS/                a `segzoo train` run directory (model.keras, metrics.json, ...);
                                   KEY pretraining-MODEL is the family's shared first stage
    runs/KEY/seedS/done.json       written atomically once the checkpoint is trained AND
                                   evaluated: a run with it is finished and never redone
    ablation.json / .md / .png     the report (`segzoo.ablation.report`), rewritten after each run

KEY names the model and its non-default switches (`mask_rcnn-roi_pooler=warp`,
`fcn16s-from-fcn32s`); variants with the same KEY are one run (see
`segzoo.ablation.studies`). Rerunning the same command after an interruption
skips the finished runs and restarts the unfinished one from scratch (same
seed, so the same result as an uninterrupted run in `--epochs` mode).

Budget: `--epochs N` trains every run N epochs (the recipe's schedule).
`--minutes M` is the whole command's wall-clock budget: the family's shared
pre-training runs take `Pretraining.share` of it and the variants' runs x seeds
split the rest evenly. Before each run, the measured cost of building,
checkpointing and evaluating a run (at first a guess: 30% of an even share) is
reserved for every run left, and the rest of the time left is divided by the
runs' shares; that is the run's training time limit (at least one step), with
a constant learning rate after warm-up (a poly schedule needs a known step
count). An invocation that resumes has M less what its finished runs took
(`train_seconds` + `overhead_seconds` in their done.json) and reserves the
overhead they measured, so its runs train as long as in an uninterrupted
ablation (the time of the run it restarts is not charged).
Training time is wall-clock, so on a shared machine a run's step count depends
on the load: `train_seconds`, `steps` and `epochs` in the report say what each
run got.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shutil
import sys
import time

import keras

from segzoo.ablation.studies import (
    Family,
    Study,
    Variant,
    get_family,
    model_parameters,
    select_studies,
)
from segzoo.errors import ArgumentError, arg

TRAIN_SHARE = 0.7  # first guess of a run's training share of its budget (the rest: build, eval)
_TIME_BUDGET_EPOCHS = 100_000  # "until the time limit"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a unique (model, switches, initialisation) at one seed.

    Attributes:
        key: the run's name (its directory under OUT/runs).
        model, model_args: what is trained.
        init_from: key of the run whose checkpoint (same seed) initialises this one, or None.
        seed: the seed.
        skip: `fnmatch` patterns of layers `init_from` does not copy (see `Pretraining`).
        weight: its share of a `--minutes` budget, relative to a variant's run (1).
        pretraining: whether it is the family's shared first stage (not a table row).
    """

    key: str
    model: str
    model_args: dict
    init_from: str | None
    seed: int
    skip: tuple = ()
    weight: float = 1.0
    pretraining: bool = False

    def directory(self, out: str) -> str:
        return os.path.join(out, "runs", self.key, f"seed{self.seed}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text)


def _non_default_args(variant: Variant) -> dict:
    """The variant's arguments that differ from the model's defaults (they name the run)."""
    defaults = model_parameters(variant.model) or {}
    changed = {}
    for name, value in variant.model_args.items():
        default = defaults.get(name, inspect.Parameter.empty)
        if default is inspect.Parameter.empty or default != value:
            changed[name] = value
    return changed


def _variant_key(variant: Variant) -> str:
    parts = [variant.model] + [f"{k}={v}" for k, v in sorted(_non_default_args(variant).items())]
    return _slug("-".join(parts))


def variant_keys(study: Study) -> dict[str, str]:
    """variant name -> run key, for the variants of `study`."""
    keys: dict[str, str] = {}
    for variant in study.variants:
        key = _variant_key(variant)
        if variant.init_from:
            key += _slug(f"-from-{keys[variant.init_from]}")
        keys[variant.name] = key
    return keys


def pretraining_key(family: Family) -> str | None:
    """The run key of the family's shared pre-training (None without one)."""
    if family.pretraining is None:
        return None
    return "pretraining-" + _variant_key(family.pretraining.variant)


def plan_runs(family: Family, studies, seeds) -> list[Run]:
    """The unique runs of `studies` x `seeds`, each after the run it initialises from: per seed,
    the family's pre-training first (when it has one), whose weights (less `Pretraining.skip`)
    start every variant that is not staged from another."""
    runs: dict[tuple[str, int], Run] = {}
    pre = family.pretraining
    pre_key = pretraining_key(family)
    for seed in seeds:
        if pre is not None:
            runs[(pre_key, seed)] = Run(pre_key, pre.variant.model,
                                        {**family.model_args, **pre.variant.model_args}, None,
                                        seed, pretraining=True)
        for study in studies:
            keys = variant_keys(study)
            for variant in study.variants:
                key = keys[variant.name]
                if (key, seed) in runs:
                    continue
                if variant.init_from:
                    init, skip = keys[variant.init_from], ()
                else:
                    init, skip = pre_key, (pre.skip if pre is not None else ())
                runs[(key, seed)] = Run(key, variant.model, {**family.model_args, **variant.model_args},
                                        init, seed, skip=tuple(skip))
    plan = list(runs.values())
    if pre is not None:  # the pre-training runs take `share` of the budget between them
        variants = sum(not r.pretraining for r in plan)
        weight = pre.share * variants / (len(seeds) * (1.0 - pre.share))
        plan = [dataclasses.replace(r, weight=weight) if r.pretraining else r for r in plan]
    return plan


def evaluate_checkpoint(checkpoint, data="shapes", data_dir=None, split="val", max_images=None) -> dict:
    """The metrics `segzoo eval --checkpoint CHECKPOINT --data DATA --split SPLIT --json` prints,
    plus `num_images`: the same checkpoint loading, dataset options and evaluation functions
    (`segzoo.commands.eval.evaluate_semantic` / `evaluate_instance`, which run
    `segzoo.evaluation.loops`)."""
    import segzoo.data
    from segzoo.commands.eval import evaluate_instance, evaluate_semantic
    from segzoo.models.base import load_checkpoint
    from segzoo.training.task_data import task_data_args

    model = load_checkpoint(checkpoint)
    load_kwargs = task_data_args(data, model.task)
    info = segzoo.data.get_info(data, data_dir=data_dir, **load_kwargs)
    elements = segzoo.data.load(data, split, data_dir=data_dir, **load_kwargs).as_numpy_iterator()
    if model.task == "semantic":
        metrics = evaluate_semantic(model, info, elements, max_images)
    else:
        metrics = evaluate_instance(model, info, elements, max_images)[0]
    return {k: v for k, v in metrics.items() if not k.startswith("per_class")}


class _StepClock(keras.callbacks.Callback):
    """Counts training steps and times `fit` from its first to its last callback."""

    def __init__(self):
        super().__init__()
        self.steps, self.seconds, self._start = 0, 0.0, None

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_train_end(self, logs=None):
        self.seconds = time.monotonic() - self._start


def _write_json(path: str, content) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(content, f, indent=2)
    os.replace(tmp, path)


def _settings(family, data, data_dir, minutes, epochs, steps_per_epoch, eval_images, recipe_overrides):
    return {"family": family.name, "data": data, "data_dir": data_dir, "minutes": minutes,
            "epochs": epochs, "steps_per_epoch": steps_per_epoch, "eval_images": eval_images,
            "recipe_overrides": dict(recipe_overrides or {})}


def _load_plan(out, settings):
    """plan.json: the settings of the ablation in OUT (a resume must use the same)."""
    path = os.path.join(out, "plan.json")
    if os.path.exists(path):
        with open(path) as f:
            plan = json.load(f)
        if plan.get("settings") != settings:
            changed = sorted(k for k in settings if plan.get("settings", {}).get(k) != settings[k])
            raise ArgumentError(
                f"{arg('out', out)} holds an ablation with other settings ({', '.join(changed)}: "
                f"{', '.join(repr(plan.get('settings', {}).get(k)) for k in changed)}); rerun it "
                f"with the same settings to resume, or pick another {arg('out')}")
        return plan
    plan = {"settings": settings, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_json(path, plan)
    return plan


def _recipe(family: Family, data, model_args, minutes, epochs, steps_per_epoch, overrides):
    recipe = dataclasses.replace(family.recipe, model_args=dict(model_args), **(overrides or {}))
    if data != recipe.data:
        data_args = recipe.data_args if data == "shapes" else {
            k: v for k, v in recipe.data_args.items() if k != "task"}  # `task` is shapes' option
        recipe = dataclasses.replace(recipe, data=data, data_args=data_args)
    if epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=int(epochs))
    elif minutes is not None:
        recipe = dataclasses.replace(recipe, epochs=_TIME_BUDGET_EPOCHS, schedule="constant")
    if steps_per_epoch is not None:
        recipe = dataclasses.replace(recipe, steps_per_epoch=int(steps_per_epoch))
    return recipe


def _train_and_evaluate(run, family, out, train_seconds, data, data_dir, minutes, epochs,
                        steps_per_epoch, eval_images, recipe_overrides, verbose) -> dict:
    from segzoo.training.fit import train

    started = time.monotonic()
    run_dir = run.directory(out)
    if os.path.isdir(run_dir):  # an unfinished run: start it again from scratch
        shutil.rmtree(run_dir)
    init_from = None
    if run.init_from:
        init_from = os.path.join(Run(run.init_from, "", {}, None, run.seed).directory(out),
                                 "model.keras")
        if not os.path.exists(init_from):
            raise FileNotFoundError(f"{run.key}: the staged initialisation {init_from!r} is missing")
    recipe = _recipe(family, data, run.model_args, minutes, epochs, steps_per_epoch, recipe_overrides)
    recipe = dataclasses.replace(recipe, init_skip=tuple(run.skip))
    seconds = train_seconds
    clock = _StepClock()
    keras.backend.clear_session()
    result = train(
        {"model": run.model, "recipe": recipe, "data": data, "data_dir": data_dir, "out": run_dir,
         "seed": run.seed, "init_from": init_from, "verbose": verbose,
         "time_limit": seconds / 60.0 if (seconds and epochs is None) else None},
        extra_callbacks=[clock],
    )
    steps_per_epoch_done = int(result.info.get("steps_per_epoch") or 1)
    del result
    keras.backend.clear_session()
    start = time.monotonic()
    metrics = evaluate_checkpoint(os.path.join(run_dir, "model.keras"), data, data_dir, "val",
                                  eval_images)
    done = {
        "key": run.key, "model": run.model, "model_args": run.model_args, "seed": run.seed,
        "init_from": run.init_from, "init_skip": list(run.skip), "pretraining": run.pretraining,
        "metrics": metrics,
        "train_seconds": round(clock.seconds, 1), "train_limit_seconds": seconds,
        "steps": clock.steps,
        "steps_per_epoch": steps_per_epoch_done,
        "epochs": round(clock.steps / steps_per_epoch_done, 3),
        "eval_seconds": round(time.monotonic() - start, 1),
        # building, checkpointing and evaluating: what a resumed ablation reserves per run
        "overhead_seconds": round(time.monotonic() - started - clock.seconds, 1),
        "checkpoint": os.path.relpath(os.path.join(run_dir, "model.keras"), out),
    }
    _write_json(os.path.join(run_dir, "done.json"), done)
    return done


def run_ablation(family_name, *, out: str | None = None, studies=None, minutes=None, epochs=None,
                 steps_per_epoch=None, seeds: int = 1, data: str = "shapes", data_dir=None,
                 eval_images=None, recipe_overrides=None, verbose=2, log=print) -> dict:
    """Trains and evaluates every run of the selected studies, then writes the report.

    Args:
        family_name: "mask_rcnn" | "fcn" (or a `Family`).
        out: output directory (default: the family's, e.g. runs/ablate-mrcnn).
        studies: study names (comma lists allowed); None = every study this build supports.
        minutes: the whole ablation's budget (default: the family's, unless `epochs` is given).
        epochs: train every run this many epochs instead of a time budget.
        steps_per_epoch: steps per epoch (None = one pass over the training split).
        seeds: runs per variant, with seeds 0 .. seeds-1.
        data, data_dir: the dataset (of the family's task) for training and evaluation.
        eval_images: evaluate on the first N validation images (`segzoo eval --max-images N`).
        recipe_overrides: other `Recipe` fields to change for every run (batch_size, ...).
        verbose: Keras fit verbosity.
        log: progress printer.
    Returns:
        the report dict written to OUT/ablation.json.
    Raises:
        ValueError: unknown family or study, bad budget / seeds, or an OUT of other settings.
    """
    from segzoo.ablation import report

    family = get_family(family_name)
    if minutes is not None and epochs is not None:
        raise ArgumentError(f"give {arg('minutes')} or {arg('epochs')}, not both "
                            f"(got {minutes} and {epochs})")
    if epochs is None and minutes is None:
        minutes = family.default_minutes
    if minutes is not None and not minutes > 0:
        raise ArgumentError(f"{arg('minutes')} must be > 0, got {minutes!r}")
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch),
                        ("seeds", seeds), ("eval_images", eval_images)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ArgumentError(f"{arg(name)} must be a positive integer, got {value!r}")
    selected = select_studies(family, studies)
    skipped = [s.name for s in family.studies if s not in selected]
    if not studies and skipped:
        log(f"segzoo ablate: skipping {', '.join(skipped)} (this build's models lack its switch)")
    out = out or family.out
    os.makedirs(out, exist_ok=True)
    seed_list = list(range(int(seeds)))
    runs = plan_runs(family, selected, seed_list)
    settings = _settings(family, data, data_dir, minutes, epochs, steps_per_epoch, eval_images,
                         recipe_overrides)
    plan = _load_plan(out, settings)
    log(f"segzoo ablate {family.name}: {len(runs)} runs ({len(selected)} studies x "
        f"{len(seed_list)} seed(s), shared baselines once), "
        + (f"{minutes:g} min in all" if minutes else f"{epochs} epoch(s) each") + f" -> {out}")
    results: dict[tuple[str, int], dict] = {}
    pending = [r for r in runs if not os.path.exists(os.path.join(r.directory(out), "done.json"))]
    overheads: list[float] = []  # measured per run, in this invocation or an earlier one
    used = 0.0  # seconds the finished runs took (training + overhead)
    for run in runs:
        if run not in pending:
            with open(os.path.join(run.directory(out), "done.json")) as f:
                results[(run.key, run.seed)] = finished = json.load(f)
            overheads.append(finished.get("overhead_seconds", finished["eval_seconds"]))
            used += finished["train_seconds"] + overheads[-1]
    start = time.monotonic()
    deadline = start + (max(0.0, minutes * 60.0 - used) if minutes else 0.0)
    for index, run in enumerate(runs, 1):
        if run not in pending:
            log(f"segzoo ablate: [{index}/{len(runs)}] {run.key} seed {run.seed}: finished before, "
                "skipped")
            continue
        train_seconds = None
        if minutes:
            left = pending[pending.index(run):]
            overhead = (sum(overheads) / len(overheads) if overheads
                        else (1 - TRAIN_SHARE) * minutes * 60.0 / len(runs))
            training_left = deadline - time.monotonic() - overhead * len(left)
            train_seconds = max(1.0, training_left * run.weight / sum(r.weight for r in left))
        log(f"segzoo ablate: [{index}/{len(runs)}] {run.key} seed {run.seed}: "
            + ("pre-training" if run.pretraining else "training")
            + (f" for {train_seconds:.0f} s" if train_seconds else ""))
        done = _train_and_evaluate(run, family, out, train_seconds, data, data_dir, minutes, epochs,
                                   steps_per_epoch, eval_images, recipe_overrides, verbose)
        overheads.append(done["overhead_seconds"])
        results[(run.key, run.seed)] = done
        key_metric = selected[0].claim.metric
        log(f"segzoo ablate: [{index}/{len(runs)}] {run.key} seed {run.seed}: {done['steps']} steps "
            f"in {done['train_seconds']:.0f} s, {key_metric} {done['metrics'].get(key_metric)}")
        report.write_report(out, family, selected, seed_list, results, plan, partial=True)
    content = report.write_report(out, family, selected, seed_list, results, plan, partial=False)
    content["wall_minutes_this_invocation"] = round((time.monotonic() - start) / 60.0, 2)
    _write_json(os.path.join(out, "ablation.json"), content)
    log(f"segzoo ablate: done in {(time.monotonic() - start) / 60:.1f} min; "
        f"{os.path.join(out, 'ablation.md')}")
    for line in content["claims"]:
        log(f"  {line['study']}: {line['verdict']}")
    sys.stdout.flush()
    return content


__all__ = ["Run", "run_ablation", "plan_runs", "variant_keys", "pretraining_key", "evaluate_checkpoint", "TRAIN_SHARE"]
