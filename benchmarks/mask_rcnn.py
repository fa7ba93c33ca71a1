"""Mask R-CNN R50-FPN on CPU: segzoo vs torchvision, each side at its best, in one interleaved run.

    python benchmarks/mask_rcnn.py                      # inference + training step, all modes
    python benchmarks/mask_rcnn.py --iters 5 --no-train --short-sides 400 800 1333 \
        --detections 0 10 50 100                        # cost growth
    python benchmarks/mask_rcnn.py --backbone resnet18 --short-sides 128 --iters 1   # smoke run
    python benchmarks/mask_rcnn.py --weights alive --torch-python /work/benchenv/bin/python \
        --short-sides 800 --iters 3 --no-train   # the same converted weights on both sides
    python benchmarks/mask_rcnn.py ... --float32-only   # no bfloat16 hardware (AVX2 only): fp32 modes

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

`--weights random` (default): both models with their own random init, 91
classes (segzoo num_classes=90 + background), one random 480x640 image resized
inside to the short side (default 800); the detection count is forced (score
threshold 0, `--detections` N kept; N = 0: no box passes, so neither side runs
the mask head).

`--weights alive`: both sides run the SAME weights on a real photo
(scikit-image's astronaut, 512x512, from the torch side): a torchvision-format
state dict of realistic random weights (`tests.weights.synthetic`, as
`benchmarks/detector_parity.py`) is written with `torch.save` by the torch
side (`--torch-python`, the bench environment), loaded there into
torchvision's COCO_V1 construction (FrozenBatchNorm2d, eps 0), and converted
for segzoo with `segzoo.weights.convert` (the `segzoo convert` path). Both
keep the COCO_V1 post-processing (score 0.05, NMS 0.5, 100 detections), so
the detections are the real ones (the same on both sides to parity, see
detector_parity.py) and the mask head and paste-back run on both; the
detection count of every case is printed. `--detections` does not apply.

Training step (both weight modes: random init): one SGD step on one image with
3 instances at the short side. Ratios printed are torchvision's best mode /
segzoo's best mode (> 1: segzoo faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIVE_ARCH = "maskrcnn_resnet50_fpn"

from machine import describe_machine  # noqa: E402
from worker_loop import serve_timings  # noqa: E402

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

    cases, counts = {}, {}
    images = tf.constant(image[None])
    alive = _segzoo_alive_model(args) if args.weights == "alive" else None
    for precision in _modes(SEGZOO_MODES, args):
        for short in args.short_sides:
            if alive is not None:
                with precision_scope(precision):
                    model = _resized_copy(alive, short)
                name = f"infer {precision} short={short} det=alive"
                cases[name] = (lambda m=model: m(images)["masks"].numpy())
                counts[name] = int(model(images)["num_detections"][0])
            for detections in () if alive is not None else args.detections:
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
    return cases, counts


def _segzoo_alive_model(args):
    """The torch side's .pth converted with `segzoo.weights.convert` (once per weights file)."""
    from segzoo.models.base import load_checkpoint
    from segzoo.weights import convert

    out = os.path.splitext(args.alive_weights)[0] + ".keras"
    if not os.path.isfile(out):
        convert("torchvision", ALIVE_ARCH, args.alive_weights, out, verbose=False)
    return load_checkpoint(out)


def _resized_copy(model, short):
    """`model` (converted Mask R-CNN) rebuilt at min_size `short` under the current policy, same weights."""
    config = model.get_config()
    transform = config["transform"]["config"]
    transform.update(min_size=short, max_size=int(short * 1333 / 800))
    copy = type(model).from_config(config)
    copy(np.zeros((1, 64, 64, 3), np.float32))  # builds every layer
    copy.set_weights(model.get_weights())
    return copy


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
    cases, counts = {}, {}
    for mode in _modes(TORCH_MODES, args):
        channels_last = mode.endswith("channels_last")
        autocast = mode.startswith("bf16")
        for short in args.short_sides:
            if args.weights == "alive":
                model = _torch_alive_model(short, args.alive_weights)
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)

                def infer_alive(model=model, autocast=autocast):
                    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                        return model([tensor])

                name = f"infer {mode} short={short} det=alive"
                cases[name] = infer_alive
                counts[name] = int(len(infer_alive()[0]["boxes"]))
            for detections in () if args.weights == "alive" else args.detections:
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
    return cases, counts


def _torch_alive_model(short, path):
    """torchvision's maskrcnn_resnet50_fpn as for COCO_V1 (FrozenBN eps 0) with the weights of `path`."""
    import torch
    import torchvision
    from torchvision.models.detection import backbone_utils, mask_rcnn
    from torchvision.models.detection._utils import overwrite_eps
    from torchvision.ops import misc

    body = torchvision.models.resnet50(norm_layer=misc.FrozenBatchNorm2d)
    model = mask_rcnn.MaskRCNN(backbone_utils._resnet_fpn_extractor(body, 3), num_classes=91,
                               min_size=short, max_size=int(short * 1333 / 800))
    model.load_state_dict(torch.load(path, weights_only=True))
    overwrite_eps(model, 0.0)
    return model.eval()


def write_alive_weights(path):
    """Torch side of `--weights alive`: the synthetic state dict (released key names) via torch.save,
    and the photo both sides run on, next to it."""
    import skimage.data
    import torch

    sys.path.insert(0, ROOT)
    from tests.weights import synthetic

    state = synthetic.detector_state_dict(ALIVE_ARCH, seed=0, released=True)
    tmp = path + ".tmp"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, tmp)
    os.replace(tmp, path)
    np.save(os.path.splitext(path)[0] + "_photo.npy", np.ascontiguousarray(skimage.data.astronaut()[..., :3]))


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
    if args.weights == "alive":
        image = np.load(os.path.splitext(args.alive_weights)[0] + "_photo.npy").astype(np.float32)
    if side == "segzoo":
        import tensorflow as tf

        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        cases, counts = segzoo_cases(image, args)
    else:
        cases, counts = torch_cases(image, args)
    print(json.dumps({"cases": list(cases), "detections": counts}), flush=True)
    return serve_timings(cases)


# --------------------------------------------------------------------------- parent


def _start(side, argv, python):
    command = [python, os.path.abspath(__file__), "--worker", side, *argv]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    header = process.stdout.readline()
    if not header:
        process.wait()
        return None, [], {}
    header = json.loads(header)
    return process, header["cases"], header.get("detections", {})


def _modes(modes, args):
    """`modes`, without the bfloat16 ones under --float32-only (a CPU without AMX / AVX512-BF16
    emulates bfloat16, several times slower than float32: timing it there says nothing)."""
    return tuple(m for m in modes if not (args.float32_only and m.startswith("bf")))


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
    parser.add_argument("--float32-only", action="store_true",
                        help="skip the bfloat16 modes of both sides (CPUs without bfloat16 hardware)")
    parser.add_argument("--weights", choices=["random", "alive"], default="random",
                        help="alive: the same converted realistic weights on both sides (see above)")
    parser.add_argument("--torch-python", default=sys.executable,
                        help="interpreter with torch / torchvision for the torch side")
    parser.add_argument("--work-dir", default=None, help="--weights alive: where the .pth / .keras go")
    parser.add_argument("--worker", choices=["segzoo", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--alive-weights", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--write-alive-weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_alive_weights:
        write_alive_weights(args.write_alive_weights)
        return 0
    if args.worker:
        return worker(args.worker, args)
    print(describe_machine(), flush=True)
    child_argv = ["--threads", str(args.threads), "--backbone", args.backbone,
                  "--short-sides", *map(str, args.short_sides),
                  "--detections", *map(str, args.detections), "--weights", args.weights]
    child_argv += [] if args.train else ["--no-train"]
    child_argv += ["--xla"] if args.xla else []
    child_argv += ["--float32-only"] if args.float32_only else []
    if args.weights == "alive":
        if args.backbone != "resnet50" or args.no_torch:
            parser.error("--weights alive converts torchvision's R50-FPN weights: needs the torch side "
                         "(--torch-python) and --backbone resnet50")
        work = args.work_dir or tempfile.mkdtemp(prefix="segzoo-bench-")
        os.makedirs(work, exist_ok=True)
        path = os.path.join(work, f"{ALIVE_ARCH}_alive.pth")
        if not os.path.isfile(path):
            subprocess.run([args.torch_python, os.path.abspath(__file__), "--write-alive-weights", path],
                           check=True)
        child_argv += ["--alive-weights", path]
    workers, counts = {}, {}
    for side in ("segzoo",) + (() if args.no_torch or args.backbone != "resnet50" else ("torch",)):
        python = args.torch_python if side == "torch" else sys.executable
        process, cases, side_counts = _start(side, child_argv, python)
        if process is None:
            print(f"{side}: worker failed to start (torch / torchvision not installed? "
                  "pip install -r requirements-bench.txt); no comparison")
            continue
        workers[side] = (process, cases)
        counts.update(side_counts)
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
        found = f"  {counts[name]} detections" if name in counts else ""
        print(f"{name:55s} median {seconds:8.3f} s  (n={len(samples[name])}){found}")
    det_suffixes = ["alive"] if args.weights == "alive" else args.detections
    for short in args.short_sides:
        for kind, suffix_list in (("infer", [f" short={short} det={d}" for d in det_suffixes]),
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
