"""Mask R-CNN R50-FPN on CPU: segzoo vs torchvision's maskrcnn_resnet50_fpn in one run.

    python benchmarks/mask_rcnn.py [--iters 3] [--threads N] [--no-train] [--no-torch]

Both models: ResNet-50-FPN, 91 classes (torchvision's count with background;
segzoo's num_classes=90 foreground + background), random weights
(`weights=None, weights_backbone=None`; trainable batch norm in both), one
480x640 RGB image resized inside to 800x1067 (padded to 800x1088).

- inference: batch-1 forward pass, best and median wall time over `--iters`
  after one warm-up call (segzoo: the traced `tf.function` the model runs
  for eager calls; torchvision: eval mode under `torch.inference_mode`).
  Note: untrained, torchvision finds no box above its 0.05 score threshold
  and skips the mask head; segzoo always runs the mask head and paste-back on
  its 100 fixed slots (static shapes), so the comparison favours torchvision.
- training: one SGD step on that one image with 3 instances (segzoo: the
  `train_step` of `model.fit` on the pre-resized 800x1088 padded batch;
  torchvision: losses + backward + step in train mode).

Prints one line per measurement and the speed ratios (torchvision time /
segzoo time; > 1 means segzoo is faster). A figure, not a test: the machine
may be shared, so compare only numbers from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def _times(fn, iters):
    fn()  # warm-up (tracing / allocation)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return min(samples), statistics.median(samples)


def _instances(height, width):
    boxes = np.array([[50, 60, 250, 300], [300, 100, 420, 500], [120, 400, 220, 620]], np.float32)
    boxes[:, [0, 2]] *= width / 640
    boxes[:, [1, 3]] *= height / 480
    masks = np.zeros((3, height, width), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1:y2, x1:x2] = 1
    return boxes, np.array([1, 5, 17], np.int32), masks


def bench_segzoo(image, iters, train):
    import keras
    import tensorflow as tf

    import segzoo

    model = segzoo.get_model("mask_rcnn", num_classes=90, backbone="resnet50")
    images = tf.constant(image[None])
    best, median = _times(lambda: model(images)["masks"].numpy(), iters)
    results = {"inference": (best, median)}
    if train:
        # The training pipeline's batch: resized to 800x1067, padded to a multiple of 32.
        height, width, pad_w = 800, 1067, 1088
        resized = tf.image.resize(images, (height, width)).numpy()
        padded = np.zeros((1, height, pad_w, 3), np.float32)
        padded[:, :, :width] = resized
        boxes, classes, masks = _instances(height, width)
        full_masks = np.zeros((1, 3, height, pad_w), np.uint8)
        full_masks[0, :, :, :width] = masks
        targets = {"boxes": boxes[None], "classes": classes[None], "masks": full_masks}
        data = tf.data.Dataset.from_tensors((padded, targets)).repeat()
        model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9))
        stamps = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                stamps.append([time.perf_counter()])

            def on_train_batch_end(self, batch, logs=None):
                float(logs["loss"])  # wait for the step
                stamps[-1].append(time.perf_counter())

        model.fit(data, steps_per_epoch=iters + 1, epochs=1, verbose=0, callbacks=[Timer()])
        samples = [end - start for start, end in stamps[1:]]
        results["train_step"] = (min(samples), statistics.median(samples))
    return results


def bench_torchvision(image, iters, train):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous() / 255.0
    model.eval()

    def infer():
        with torch.inference_mode():
            model([tensor])

    results = {"inference": _times(infer, iters)}
    if train:
        boxes, classes, masks = _instances(*image.shape[:2])
        target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(classes.astype(np.int64)),
                  "masks": torch.from_numpy(masks)}
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

        def step():
            losses = model([tensor], [target])
            total = sum(losses.values())
            optimizer.zero_grad()
            total.backward()
            optimizer.step()

        results["train_step"] = _times(step, iters)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both (0 = default)")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    parser.add_argument("--no-torch", action="store_true", help="skip torchvision")
    parser.add_argument("--torch-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    image = np.random.default_rng(0).uniform(0, 255, (480, 640, 3)).astype(np.float32)
    train = not args.no_train

    if args.torch_json:  # the child process: torchvision only (torch and TF apart)
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(bench_torchvision(image, args.iters, train)))
        return 0

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    ours = bench_segzoo(image, args.iters, train)
    for name, (best, median) in ours.items():
        print(f"segzoo      {name:11s} best {best:7.3f} s  median {median:7.3f} s", flush=True)
    if args.no_torch:
        return 0
    # torchvision runs in its own process: torch and TensorFlow in one process can clash.
    command = [sys.executable, os.path.abspath(__file__), "--torch-json", "--iters", str(args.iters),
               "--threads", str(args.threads)] + (["--no-train"] if args.no_train else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        if "No module named 'torch" in done.stderr:
            print("torchvision: not installed (pip install -r requirements-bench.txt); no comparison")
            return 0
        print(f"torchvision run failed:\n{done.stderr[-2000:]}")
        return 1
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (best, median) in theirs.items():
        print(f"torchvision {name:11s} best {best:7.3f} s  median {median:7.3f} s")
    for name in ours:
        print(f"speed-up over torchvision, {name}: {theirs[name][0] / ours[name][0]:.2f}x (best times)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
