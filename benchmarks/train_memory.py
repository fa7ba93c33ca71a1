"""Peak memory of Mask R-CNN training steps against the number of instances, at COCO size.

    python benchmarks/train_memory.py                       # R50-FPN, 1 / 20 / 50 instances
    python benchmarks/train_memory.py --backbone resnet18 --instances 1 20 50 --steps 2
    python benchmarks/train_memory.py --mask-crop-size 0    # the full-image target masks

Each instance count runs in a fresh child process (so one run's peak does not
hide the next): one synthetic 800x1333 image with N instances (ellipses and
rectangles of 40-400 px, full-image uint8 masks, as a loader gives them) goes
through the training input pipeline (`segzoo.data.pipeline.instance_train_pipeline`,
short side 800, long side at most 1333, batch 1, with the flips) into
`model.fit` for `--steps` steps (target masks as box crops `mask_crops`
float32 [B, 100, C, C], as `segzoo train` makes them, or with
`--mask-crop-size 0` the full-image `masks` uint8 [B, 100, H, W]), the model compiled with the optimizer only
(as `segzoo train` does for instance models). The child reports:
- `rss_built_mib`: peak RSS after building the model and the pipeline, before
  the first step;
- `rss_peak_mib`: peak RSS (ru_maxrss) at the end, and `growth_mib` = the
  difference, what the training steps (trace, activations, gradients, the
  input pipeline's buffers) add;
- the target masks' spec as the pipeline yields them (dtype, shape) and their
  bytes per batch, so a change of the target layout shows up here;
- `step_seconds`: the wall time of the steps after the first (the first traces).
One JSON line per instance count, after the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402

HEIGHT, WIDTH = 800, 1333


def synthetic_element(num_instances, seed=0):
    """One image and its instances: uint8 [H, W, 3], boxes float32 [N, 4] xyxy, masks [N, H, W]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    masks = np.zeros((num_instances, HEIGHT, WIDTH), np.uint8)
    ys, xs = np.ogrid[:HEIGHT, :WIDTH]
    for i in range(num_instances):
        h, w = rng.integers(40, 400, 2)
        y0, x0 = rng.integers(0, HEIGHT - h), rng.integers(0, WIDTH - w)
        if i % 2:
            masks[i, y0:y0 + h, x0:x0 + w] = 1
        else:
            cy, cx = y0 + h / 2, x0 + w / 2
            masks[i] = ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1
    boxes = np.zeros((num_instances, 4), np.float32)
    for i in range(num_instances):
        rows, cols = np.flatnonzero(masks[i].any(1)), np.flatnonzero(masks[i].any(0))
        boxes[i] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    classes = (np.arange(num_instances) % 3 + 1).astype(np.int32)
    return {"image": image, "boxes": boxes, "classes": classes, "masks": masks,
            "is_crowd": np.zeros(num_instances, bool), "image_id": np.int64(0)}


def _rss_peak_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child(args) -> dict:
    import time

    import keras
    import tensorflow as tf

    import segzoo
    from segzoo.data.pipeline import instance_train_pipeline

    element = synthetic_element(args.instances)
    ds = tf.data.Dataset.from_tensors(element).repeat()
    ds = instance_train_pipeline(ds, HEIGHT, 1, max_size=WIDTH, max_instances=100, seed=0,
                                 shuffle_buffer=0, drop_remainder=True,
                                 mask_crop_size=args.mask_crop_size or None)
    masks_spec = ds.element_spec[1]["mask_crops" if args.mask_crop_size else "masks"]
    model = segzoo.get_model("mask_rcnn", num_classes=3, backbone=args.backbone,
                             min_size=HEIGHT, max_size=WIDTH)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e-4, momentum=0.9))
    del element
    built = _rss_peak_mib()

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(ds, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[Timer()])
    peak = _rss_peak_mib()
    shape = [int(d) if d is not None else None for d in masks_spec.shape]
    known = all(d is not None for d in shape)
    bytes_per_batch = (int(tf.TensorShape(shape).num_elements()) * masks_spec.dtype.size
                       if known else None)
    return {"instances": args.instances, "backbone": args.backbone,
            "image": [HEIGHT, WIDTH], "steps": args.steps,
            "rss_built_mib": round(built, 1), "rss_peak_mib": round(peak, 1),
            "growth_mib": round(peak - built, 1),
            "target_masks": {"dtype": masks_spec.dtype.name, "shape": shape,
                             "mib_per_batch": None if bytes_per_batch is None
                             else round(bytes_per_batch / 2**20, 1)},
            "step_seconds": [round(t, 2) for t in times]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet50",
                        help="resnet50 (R50-FPN, the default) or resnet18 for a faster run")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 20, 50])
    parser.add_argument("--steps", type=int, default=2, help="training steps per run (>= 1)")
    parser.add_argument("--mask-crop-size", type=int, default=56,
                        help="box-resolution target masks C x C as segzoo train uses (56); "
                             "0 = full-image masks [B, 100, H, W]")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or any(n < 0 or n > 100 for n in args.instances):
        raise SystemExit("--steps must be >= 1 and --instances within 0..100")
    if args.child:
        (n,) = args.instances
        args.instances = n
        print(json.dumps(child(args)), flush=True)
        return 0
    print(describe_machine(), flush=True)
    for n in args.instances:
        command = [sys.executable, os.path.abspath(__file__), "--child", "--backbone",
                   args.backbone, "--steps", str(args.steps), "--instances", str(n),
                   "--mask-crop-size", str(args.mask_crop_size)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(json.dumps({"instances": n, "error": done.stderr.strip().splitlines()[-3:]}))
            continue
        print(lines[-1], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
