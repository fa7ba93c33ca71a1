"""Mask R-CNN R50-FPN on CPU: segzoo vs torchvision, each side at its best, in one interleaved run.

    python benchmarks/mask_rcnn.py                      # inference + training step, all modes
    python benchmarks/mask_rcnn.py --iters 5 --no-train --short-sides 400 800 1333 \
        --detections 0 10 50 100                        # cost growth
    python benchmarks/mask_rcnn.py --backbone resnet18 --short-sides 128 --iters 1   # smoke run

Prints the machine (CPU, ISA: AMX / AVX512-BF16 / AVX2, threads, versions)
first. Modes, each side at its best:
- segzoo: float32 and bfloat16 (the model built under the Keras
  `mixed_bfloat16` policy, `--precision bfloat16`); `--xla` adds the training
  step compiled with `jit_compile=True`.
- torchvision: fp32 NCHW, fp32 channels_last, bf16 autocast
  (`torch.autocast("cpu", torch.bfloat16)`) NCHW and channels_last.
Each side runs in its own long-lived worker process (torch and TensorFlow
apart) holding every mode warmed up; the parent asks for one timing at a time,
round-robin over all (side, mode) pairs, so load changes on a shared machine
hit every mode alike. Reported: the median over `--iters` rounds.

Both models: random weights, 91 classes (segzoo num_classes=90 + background),
one random 480x640 image resized inside to the short side (default 800). The
detection count is forced (score threshold 0, `--detections` N kept; N = 0:
no box passes, so neither side runs the mask head). Training step: one SGD
step on one image with 3 instances at the short side. Ratios printed are
torchvision's best mode / segzoo's best mode (> 1: segzoo faster).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402

SEGZOO_MODES = ("float32", "bfloat16")
TORCH_MODES = ("fp32", "fp32_channels_last", "bf16_autocast", "bf16_autocast_channels_last")


def _instances(height, width):
    boxes = np.array([[50, 60, 250, 300], [300, 100, 420, 500], [120, 400, 220, 620]], np.float32)
    boxes[:, [0, 2]] *= width / 640
    boxes[:, [1, 3]] *= height / 480
    masks = np.zeros((3, height, width), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[i, y1:y2, x1:x2] = 1
    return boxes, np.array([1, 5, 17], np.int32), masks


def _resized_size(short, height=480, width=640, max_ratio=1333 / 800):
    scale = min(short / min(height, width), short * max_ratio / max(height, width))
    return int(round(height * scale)), int(round(width * scale))


# --------------------------------------------------------------------------- segzoo worker


def segzoo_cases(image, args):
    """{case name: zero-argument callable timing one run}, every case warmed up."""
    import keras
    import tensorflow as tf

    import segzoo
    from segzoo.training.precision import precision_scope

    cases = {}
    images = tf.constant(image[None])
    for precision in SEGZOO_MODES:
        for short in args.short_sides:
            for detections in args.detections:
                with precision_scope(precision):
                    model = segzoo.get_model(
                        "mask_rcnn", num_classes=90, backbone=args.backbone, min_size=short,
                        max_size=int(short * 1333 / 800), max_detections=max(detections, 1),
                        box_score_threshold=0.0 if detections else 1.01)
                name = f"infer {precision} short={short} det={detections}"
                cases[name] = (lambda m=model: m(images)["masks"].numpy())
            if args.train:
                for jit in (False, True) if args.xla else (False,):
                    cases[f"train {precision}{' xla' if jit else ''} short={short}"] = \
                        _segzoo_train_case(image, short, precision, jit, args.backbone)
    keras.utils.set_random_seed(0)
    for fn in cases.values():
        fn()  # warm-up: tracing, allocation
    return cases


def _segzoo_train_case(image, short, precision, jit, backbone):
    import keras
    import tensorflow as tf

    import segzoo
    from segzoo.training.precision import precision_scope

    height, width = _resized_size(short)
    pad_h, pad_w = -(-height // 32) * 32, -(-width // 32) * 32
    resized = tf.image.resize(image[None], (height, width)).numpy()
    padded = np.zeros((1, pad_h, pad_w, 3), np.float32)
    padded[:, :height, :width] = resized
    boxes, classes, masks = _instances(height, width)
    full_masks = np.zeros((1, 3, pad_h, pad_w), np.uint8)
    full_masks[0, :, :height, :width] = masks
    targets = {"boxes": boxes[None], "classes": classes[None], "masks": full_masks}
    with precision_scope(precision):
        model = segzoo.get_model("mask_rcnn", num_classes=90, backbone=backbone, min_size=short,
                                 max_size=int(short * 1333 / 800))
        model.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9), jit_compile=jit)
    data = tf.data.Dataset.from_tensors((padded, targets)).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # builds the model and optimizer
    step = model.train_function  # the traced step `fit` runs
    iterator = iter(data)

    def run():
        logs = step(iterator)
        float(logs["loss"])  # wait for the step

    return run


# --------------------------------------------------------------------------- torchvision worker


def torch_cases(image, args):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    if args.threads:
        torch.set_num_threads(args.threads)
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous() / 255.0
    cases = {}
    for mode in TORCH_MODES:
        channels_last = mode.endswith("channels_last")
        autocast = mode.startswith("bf16")
        for short in args.short_sides:
            for detections in args.detections:
                model = maskrcnn_resnet50_fpn(
                    weights=None, weights_backbone=None, num_classes=91, min_size=short,
                    max_size=int(short * 1333 / 800), box_score_thresh=0.0 if detections else 1.01,
                    box_detections_per_img=max(detections, 1)).eval()
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)

                def infer(model=model, autocast=autocast):
                    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16,
                                                                enabled=autocast):
                        model([tensor])

                cases[f"infer {mode} short={short} det={detections}"] = infer
            if args.train:
                cases[f"train {mode} short={short}"] = _torch_train_case(
                    image, tensor, short, channels_last, autocast)
    for fn in cases.values():
        fn()
    return cases


def _torch_train_case(image, tensor, short, channels_last, autocast):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    boxes, classes, masks = _instances(*image.shape[:2])
    target = {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(classes.astype(np.int64)),
              "masks": torch.from_numpy(masks)}
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91,
                                  min_size=short, max_size=int(short * 1333 / 800)).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            losses = model([tensor], [target])
            total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    return step


def worker(side, args) -> int:
    """A child process: builds its cases, then times one case per line read from stdin."""
    image = np.random.default_rng(0).uniform(0, 255, (480, 640, 3)).astype(np.float32)
    if side == "segzoo":
        import tensorflow as tf

        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        cases = segzoo_cases(image, args)
    else:
        cases = torch_cases(image, args)
    print(json.dumps({"cases": list(cases)}), flush=True)
    for line in sys.stdin:
        name = line.strip()
        start = time.perf_counter()
        cases[name]()
        print(json.dumps({"case": name, "seconds": time.perf_counter() - start}), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def _start(side, argv):
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, *argv]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    header = process.stdout.readline()
    if not header:
        process.wait()
        return None, []
    return process, json.loads(header)["cases"]


def _best(results, prefix, modes, suffix):
    times = {m: results.get(f"{prefix} {m}{suffix}") for m in modes}
    times = {m: t for m, t in times.items() if t is not None}
    if not times:
        return None, None
    mode = min(times, key=times.get)
    return mode, times[mode]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = default)")
    parser.add_argument("--short-sides", type=int, nargs="+", default=[800])
    parser.add_argument("--detections", type=int, nargs="+", default=[100])
    parser.add_argument("--backbone", default="resnet50", help="segzoo backbone (smoke runs)")
    parser.add_argument("--no-train", dest="train", action="store_false")
    parser.add_argument("--no-torch", action="store_true", help="skip torchvision")
    parser.add_argument("--xla", action="store_true", help="also the XLA-compiled training step")
    parser.add_argument("--worker", choices=["segzoo", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args)
    print(describe_machine(), flush=True)
    child_argv = ["--threads", str(args.threads), "--backbone", args.backbone,
                  "--short-sides", *map(str, args.short_sides),
                  "--detections", *map(str, args.detections)]
    child_argv += [] if args.train else ["--no-train"]
    child_argv += ["--xla"] if args.xla else []
    workers = {}
    for side in ("segzoo",) + (() if args.no_torch or args.backbone != "resnet50" else ("torch",)):
        process, cases = _start(side, child_argv)
        if process is None:
            print(f"{side}: worker failed to start (torch / torchvision not installed? "
                  "pip install -r requirements-bench.txt); no comparison")
            continue
        workers[side] = (process, cases)
    samples = {}
    for _ in range(args.iters):  # interleaved: one timing of every case per round
        for process, cases in workers.values():
            for name in cases:
                process.stdin.write(name + "\n")
                process.stdin.flush()
                reply = json.loads(process.stdout.readline())
                samples.setdefault(reply["case"], []).append(reply["seconds"])
    for process, _ in workers.values():
        process.stdin.close()
        process.wait()
    results = {name: statistics.median(times) for name, times in samples.items()}
    for name, seconds in results.items():
        print(f"{name:55s} median {seconds:8.3f} s  (n={len(samples[name])})")
    for short in args.short_sides:
        for kind, suffix_list in (("infer", [f" short={short} det={d}" for d in args.detections]),
                                  ("train", [f" short={short}"] if args.train else [])):
            for suffix in suffix_list:
                ours, ours_t = _best(results, kind, SEGZOO_MODES + ("float32 xla", "bfloat16 xla"),
                                     suffix)
                theirs, theirs_t = _best(results, kind, TORCH_MODES, suffix)
                if ours_t and theirs_t:
                    print(f"{kind}{suffix}: torchvision best ({theirs}) {theirs_t:.3f} s / segzoo "
                          f"best ({ours}) {ours_t:.3f} s = {theirs_t / ours_t:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
