"""`segzoo eval --checkpoint RUN/model.keras [--data NAME] [--split val] [--json]`.

Semantic checkpoints: FCN's pixel accuracy, mean accuracy, mean IoU and
frequency-weighted IoU from one confusion matrix, each image segmented at its
original resolution (batch 1, no resize), 255 ignored; a per-class IoU table
with the checkpoint's class names. Instance checkpoints: COCO box / mask AP
through `segzoo.evaluation.instance.InstanceEvaluator` (pycocotools).
`--json` prints one JSON object with the DESIGN.md keys.
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

    if len(model.class_names) != info.num_classes:
        raise ValueError(
            f"the checkpoint has {len(model.class_names)} classes but the dataset has "
            f"{info.num_classes} ({', '.join(info.class_names)}); evaluate on the dataset it was "
            "trained for"
        )
    return evaluate(model, elements, max_images=max_images)


def evaluate_instance(model, info, elements, max_images=None):
    """COCO AP of an instance model; returns (metrics dict, evaluator)."""
    from segzoo.evaluation.loops import evaluate_instances

    return evaluate_instances(model, elements, info, max_images=max_images,
                              class_names=list(info.class_names))


def run(args) -> int:
    import segzoo.data
    from segzoo.evaluation.semantic import format_table
    from segzoo.models.base import load_checkpoint
    from segzoo.training.task_data import task_data_args

    model = load_checkpoint(args.checkpoint)
    task = model.task
    load_kwargs = task_data_args(args.data, task)
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
    elements = ds.as_numpy_iterator()
    if task == "semantic":
        metrics = evaluate_semantic(model, info, elements, args.max_images)
        if args.json:
            keys = ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou", "per_class_iou")
            print(json.dumps(_jsonable({k: metrics[k] for k in keys})))
        else:
            print(f"{args.checkpoint}: {args.data}/{args.split}, {metrics['num_images']} images "
                  "at original resolution")
            print(format_table(metrics, model.class_names))
        return 0
    metrics, evaluator = evaluate_instance(model, info, elements, args.max_images)
    if args.json:
        print(json.dumps(_jsonable({k: v for k, v in metrics.items() if not k.startswith("per_class")})))
    else:
        print(f"{args.checkpoint}: {args.data}/{args.split}, {metrics['num_images']} images")
        print(evaluator.table())
    return 0
