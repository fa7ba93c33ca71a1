"""`segzoo demo` (`make demo`): the whole job on the built-in shapes set, on CPU, no download.

1. trains U-Net (base_filters=16) with the `shapes_unet` recipe for at most
   `--minutes` (default 5);
2. evaluates the best checkpoint on the validation split at original
   resolution (prints the per-class table);
3. segments a few validation images (`segzoo predict`'s files);
4. exports the checkpoint as a SavedModel;
5. segments one image with the export in a separate Python process that
   never imports segzoo (only TensorFlow, through the `serving_bytes`
   signature), and compares its labels with step 3's;
and says where every result is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

# Runs in a fresh interpreter (-I: no PYTHONPATH, no user site): TensorFlow only.
SERVING_CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf
from PIL import Image

export_dir, image_path, out_path = sys.argv[1:4]
served = tf.saved_model.load(export_dir)
with open(image_path, "rb") as f:
    outputs = served.signatures["serving_bytes"](image_bytes=tf.constant([f.read()]))
labels = outputs["labels"][0].numpy().astype(np.uint8)
Image.fromarray(labels).save(out_path)
names = [n.decode() for n in served.class_names().numpy()]
assert not any(m == "segzoo" or m.startswith("segzoo.") for m in sys.modules), "segzoo imported"
print(json.dumps({"classes": [names[i] for i in np.unique(labels)]}))
"""


def serve_in_fresh_process(export_dir: str, image_path: str, out_path: str) -> dict:
    """Runs `SERVING_CHILD`; returns its JSON line. TensorFlow's start-up lines are dropped
    from its stderr; anything else it prints there is shown."""
    from segzoo.commands.quiet import is_startup_noise

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = subprocess.run([sys.executable, "-I", "-c", SERVING_CHILD, export_dir, image_path,
                             out_path], capture_output=True, text=True, env=env,
                            cwd=os.path.dirname(out_path))
    for line in result.stderr.splitlines(keepends=True):
        if line.strip() and not is_startup_noise(line):
            sys.stderr.write(line)
    if result.returncode != 0:
        raise RuntimeError(f"the serving process failed (exit {result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(args) -> int:
    import segzoo.data
    from segzoo.commands.eval import _jsonable, evaluate_semantic
    from segzoo.commands.predict import predict_semantic
    from segzoo.evaluation.semantic import format_table
    from segzoo.export import export_saved_model
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
    eval_json = os.path.join(out, "eval.json")
    with open(eval_json, "w") as f:
        json.dump(_jsonable(dict(metrics)), f, indent=2)

    images_dir, pred_dir = os.path.join(out, "images"), os.path.join(out, "predictions")
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    names, predicted = [], {}
    for element in val[:6]:
        image_id = element["image_id"]
        name = image_id.decode() if isinstance(image_id, bytes) else str(image_id)
        Image.fromarray(np.asarray(element["image"])).save(os.path.join(images_dir, f"{name}.png"))
        predicted[name] = predict_semantic(model, np.asarray(element["image"]), name, pred_dir)
        names.append(name)

    export_dir = os.path.join(out, "export")
    export_saved_model(model, export_dir)
    served_dir = os.path.join(out, "served")
    os.makedirs(served_dir, exist_ok=True)
    first = names[0]
    served_png = os.path.join(served_dir, f"{first}.png")
    print(f"\nsegzoo demo: exported {export_dir}; segmenting {first}.png with it in a process "
          "without segzoo")
    served = serve_in_fresh_process(export_dir, os.path.join(images_dir, f"{first}.png"), served_png)
    agreement = float(np.mean(np.asarray(Image.open(served_png)) == predicted[first]))

    minutes = (time.monotonic() - start) / 60
    print(f"\nsegzoo demo: done in {minutes:.1f} min; val mean IoU {metrics['mean_iou']:.3f}")
    print(f"  checkpoint      {checkpoint}")
    print(f"  training log    {os.path.join(run_dir, 'train_log.csv')}")
    print(f"  TensorBoard     tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")
    print(f"  metrics         {os.path.join(run_dir, 'metrics.json')}, {eval_json}")
    print(f"  input images    {images_dir}")
    print(f"  predictions     {pred_dir}  (NAME.png class ids, NAME_overlay.png)")
    print(f"  SavedModel      {export_dir}  (serving_default: uint8 images; serving_bytes: PNG/JPEG)")
    print(f"  served labels   {served_png}  (classes {', '.join(served['classes'])}; "
          f"{agreement:.1%} of pixels equal segzoo predict's)")
    print(f"  next: segzoo eval --checkpoint {checkpoint}")
    print(f"        segzoo predict --checkpoint {checkpoint} IMAGE... --out DIR")
    print(f"        segzoo export --checkpoint {checkpoint} --out exported/")
    return 0
