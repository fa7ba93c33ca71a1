"""`segzoo demo` (`make demo`): train, evaluate and predict on the built-in shapes set, on CPU.

Trains U-Net (base_filters=16) with the `shapes_unet` recipe for at most
`--minutes` (default 5), evaluates the best checkpoint on the validation split
at original resolution (prints the per-class table), segments a few
validation images and says where everything went. Needs no download.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from PIL import Image


def run(args) -> int:
    import segzoo.data
    from segzoo.commands.eval import _jsonable, evaluate_semantic
    from segzoo.commands.predict import predict_semantic
    from segzoo.evaluation.semantic import format_table
    from segzoo.models.base import load_checkpoint
    from segzoo.training.fit import train

    out = os.path.abspath(args.out)
    run_dir = os.path.join(out, "run")
    start = time.monotonic()
    print(f"segzoo demo: training U-Net (base_filters=16) on shapes for at most {args.minutes:g} min")
    train({"model": "unet", "data": "shapes", "recipe": "shapes_unet", "out": run_dir,
           "time_limit": args.minutes, "verbose": 2})
    checkpoint = os.path.join(run_dir, "model.keras")
    model = load_checkpoint(checkpoint)

    info = segzoo.data.get_info("shapes")
    val = list(segzoo.data.load("shapes", "val").as_numpy_iterator())
    metrics = evaluate_semantic(model, info, val)
    print(f"\nsegzoo demo: evaluation of {checkpoint} on shapes/val ({len(val)} images)")
    print(format_table(metrics, model.class_names))
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(_jsonable({k: v for k, v in metrics.items()}), f, indent=2)

    images_dir, pred_dir = os.path.join(out, "images"), os.path.join(out, "predictions")
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    for element in val[:6]:
        name = element["image_id"].decode() if isinstance(element["image_id"], bytes) else str(
            element["image_id"])
        Image.fromarray(np.asarray(element["image"])).save(os.path.join(images_dir, f"{name}.png"))
        predict_semantic(model, np.asarray(element["image"]), name, pred_dir)

    minutes = (time.monotonic() - start) / 60
    print(f"\nsegzoo demo: done in {minutes:.1f} min; val mean IoU {metrics['mean_iou']:.3f}")
    print(f"  checkpoint      {checkpoint}")
    print(f"  training log    {os.path.join(run_dir, 'train_log.csv')}")
    print(f"  TensorBoard     tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")
    print(f"  metrics         {os.path.join(run_dir, 'metrics.json')}, {os.path.join(out, 'eval.json')}")
    print(f"  input images    {images_dir}")
    print(f"  predictions     {pred_dir}  (NAME.png class ids, NAME_overlay.png)")
    print(f"  next: segzoo eval --checkpoint {checkpoint}")
    print(f"        segzoo predict --checkpoint {checkpoint} IMAGE... --out DIR")
    print(f"        segzoo export --checkpoint {checkpoint} --out exported/")
    return 0
