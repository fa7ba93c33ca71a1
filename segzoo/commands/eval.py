"""`segzoo eval --checkpoint RUN/model.keras [--data NAME] [--split val] [--json]`.

Semantic checkpoints: FCN's pixel accuracy, mean accuracy, mean IoU and
frequency-weighted IoU from one confusion matrix, each image segmented at its
original resolution (batch 1, no resize), 255 ignored; a per-class IoU table
with the checkpoint's class names. Instance checkpoints: COCO box / mask AP
through `segzoo.evaluation.instance.InstanceEvaluator` (pycocotools), plus
keypoint AP for keypoint models (their data is loaded with `keypoints=True`).
`--json` prints one JSON object with the DESIGN.md keys. `--plots DIR` writes
`segzoo.evaluation.plots`' figures; `--tta` / `--tile SIZE --overlap PX` segment
through `segzoo.inference` (images larger than the tile are tiled). A progress
bar (images/s, ETA) goes to stderr.
"""

from __future__ import annotations

import json
import math

import numpy as np


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def evaluate_semantic(model, info, elements, max_images=None) -> dict:
    """FCN metrics of a semantic model (`segzoo.evaluation.loops.evaluate_semantic`)."""
    from segzoo.evaluation.loops import evaluate_semantic as evaluate

    _check_classes(model, info)
    return evaluate(model, elements, max_images=max_images)


def evaluate_instance(model, info, elements, max_images=None):
    """COCO AP of an instance model; returns (metrics dict, evaluator)."""
    from segzoo.evaluation.loops import evaluate_instances

    return evaluate_instances(model, elements, info, max_images=max_images,
                              class_names=list(info.class_names))


def _check_classes(model, info):
    if len(model.class_names) != info.num_classes:
        raise ValueError(
            f"the checkpoint has {len(model.class_names)} classes but the dataset has "
            f"{info.num_classes} ({', '.join(info.class_names)}); evaluate on the dataset it was "
            "trained for"
        )


def _evaluate_with_progress(args, model, info, ds):
    """(metrics, evaluator or None, confusion matrix or None), with a progress bar on stderr.

    `--tta` / `--tile` go through `segzoo.inference.runner.Predictor`; without them
    each image is segmented / detected whole, as `segzoo train` validates.
    """
    from segzoo.commands.predict import tiling_options
    from segzoo.evaluation.loops import evaluate_instances, semantic_confusion
    from segzoo.inference.inputs import Progress
    from segzoo.inference.runner import Predictor
    from segzoo.inference.tta import parse_tta

    tta = parse_tta(args.tta)
    tile, overlap = tiling_options(args)
    predictor = Predictor(model, tile_size=tile, overlap=overlap, tta=tta, score_threshold=0.0)
    total = int(ds.cardinality())
    total = None if total < 0 else total
    if args.max_images is not None:
        total = args.max_images if total is None else min(total, args.max_images)
    elements = ds.as_numpy_iterator()
    with Progress(total, "eval") as progress:
        if model.task == "semantic":
            _check_classes(model, info)
            labels_fn = None if tta is None and tile is None else predictor.labels
            cm, count = semantic_confusion(model, elements, labels_fn, max_images=args.max_images,
                                           progress=progress)
            metrics = cm.metrics()
            metrics["num_images"] = count
            return metrics, None, cm
        detect_fn = predictor.detect if tile is None else predictor.detections
        metrics, evaluator = evaluate_instances(
            model, elements, info, max_images=args.max_images, class_names=list(info.class_names),
            detect_fn=detect_fn, progress=progress)
        return metrics, evaluator, None


def run(args) -> int:
    import sys

    import segzoo.data
    from segzoo.evaluation import plots
    from segzoo.evaluation.semantic import format_table
    from segzoo.training.precision import load_checkpoint_at
    from segzoo.training.task_data import task_data_args

    model = load_checkpoint_at(args.checkpoint, getattr(args, "precision", None))
    task = model.task
    load_kwargs = task_data_args(args.data, task,
                                 keypoints=model.has_keypoints)
    info = segzoo.data.get_info(args.data, data_dir=args.data_dir, **load_kwargs)
    if info.task != model.task:
        raise ValueError(
            f"--data {args.data!r} is a {info.task} dataset but the checkpoint is a {model.task} model"
        )
    if args.split is None:  # the data's validation split (val2017 for the COCO release)
        args.split = segzoo.data.default_splits(info)[1] or "val"
    if args.split not in info.splits:
        raise ValueError(f"--split {args.split!r}: {args.data!r} has splits {', '.join(info.splits)}")
    ds = segzoo.data.load(args.data, args.split, data_dir=args.data_dir, **load_kwargs)
    metrics, evaluator, cm = _evaluate_with_progress(args, model, info, ds)
    if args.plots:
        written = (plots.write_semantic_plots(args.plots, cm.hist, model.class_names) if cm is not None
                   else plots.write_instance_plots(args.plots, evaluator.coco_evals))
        print(f"segzoo eval: figures {', '.join(written)}", file=sys.stderr)
    if task == "semantic":
        if args.json:
            keys = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou", "per_class_iou")
            print(json.dumps(_jsonable({k: metrics[k] for k in keys})))
        else:
            print(f"{args.checkpoint}: {args.data}/{args.split}, {metrics['num_images']} images "
                  "at original resolution")
            print(format_table(metrics, model.class_names))
        return 0
    if args.json:
        print(json.dumps(_jsonable({k: v for k, v in metrics.items() if not k.startswith("per_class")})))
    else:
        print(f"{args.checkpoint}: {args.data}/{args.split}, {metrics['num_images']} images")
        print(evaluator.table())
    return 0
