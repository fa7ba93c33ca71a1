"""Mask R-CNN ResNet-18 FPN training step at small sizes: segzoo as `segzoo train` runs it vs torchvision.

    python benchmarks/train_step_small.py --data-dir /work/data/mydata             # 128 and 256 px
    python benchmarks/train_step_small.py --data-dir DIR --sizes 128 --rounds 5 --steps 10

The user's command of issue #8 is

    segzoo train mask_rcnn --data coco --data-dir DIR --model-arg backbone=resnet18 \
        --image-size 128 --epochs 12 --batch-size 4

- segzoo (this interpreter, /work/main/.venv): the recipe, model, task pipeline and
  optimizer are set up by the fit loop's own functions (`resolve_recipe`, the data
  defaults, `build_model`, `InstanceTask`, `build_training_optimizer`,
  `model.compile`), `model.fit` runs one step to build everything, then each timing
  calls the compiled `model.train_function` on the live training pipeline (its
  input cost included, as in `segzoo train`).
- torchvision (`--torch-python`, default /work/benchenv/bin/python, in a
  subprocess): `MaskRCNN(resnet_fpn_backbone("resnet18", weights=None,
  trainable_layers=5), num_classes=K + 1, min_size=S, max_size=round(S * 1333 / 800),
  box_batch_size_per_image=R)` with R the RoIs per image of segzoo's recipe at that size
  (`defaults.rois_per_image`: 128 at 128-256 px, 512 at 800; `--rois R` sets both sides)
  (torchvision's defaults otherwise: 2000/2000 pre/post-NMS proposals per image in
  training, mask targets RoIAligned from per-GT masks), SGD
  (lr 0.001, momentum 0.9), on the same images and instances (the first
  `steps x batch` images of the split, crowd instances dropped), fed as uint8 ->
  float tensors in [0, 1] with their full-image masks; torchvision resizes them itself.

Both sides see the same images: one timing is `--steps` consecutive steps over
those images; reported is the median per-step time over `--rounds` rounds,
interleaved (segzoo round, torchvision round, ...), so load changes hit both
alike. The load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402
from worker_loop import serve_timings  # noqa: E402

TORCH_PYTHON = "/work/benchenv/bin/python"


def _max_size(size):
    return int(round(size * 1333 / 800))



# --------------------------------------------------------------------------- shared data


def export_images(data, data_dir, split, count, path):
    """The first `count` images of `split` (crowds dropped) as an .npz for the torch worker.

    Returns (number of classes K, instances per image list)."""
    import segzoo.data
    from segzoo.training.task_data import load_split, task_data_args

    info = segzoo.data.get_info(data, data_dir=data_dir, **task_data_args(data, "instance", {}))
    ds = load_split(data, split, data_dir, "instance", {}, count)
    arrays, counts = {}, []
    for i, element in enumerate(ds.as_numpy_iterator()):
        keep = ~element["is_crowd"].astype(bool)
        arrays[f"image_{i}"] = element["image"]
        arrays[f"boxes_{i}"] = element["boxes"][keep].astype(np.float32)
        arrays[f"classes_{i}"] = element["classes"][keep].astype(np.int64)
        arrays[f"masks_{i}"] = element["masks"][keep].astype(np.uint8)
        counts.append(int(keep.sum()))
    np.savez(path, **arrays)
    return info.num_classes, counts


# --------------------------------------------------------------------------- segzoo side


def segzoo_step(args, size):
    """A zero-argument callable running `args.steps` steps of the `segzoo train` step at `size`."""
    import tensorflow as tf

    import segzoo.data
    from segzoo.training import fit as fit_module
    from segzoo.training.optimizers import build_training_optimizer
    from segzoo.training.setup import build_model, resolve_recipe
    from segzoo.training.task_data import load_split

    model_arg = [("backbone", "resnet18")]
    if args.rois:
        model_arg.append(("box_batch_size_per_image", args.rois))
    config = {"model": "mask_rcnn", "data": args.data, "data_dir": args.data_dir, "image_size": size,
              "batch_size": args.batch_size, "epochs": 12, "model_arg": model_arg}
    recipe, spec = resolve_recipe(config)
    info = segzoo.data.get_info(recipe.data, data_dir=args.data_dir)
    recipe, _, _ = fit_module._fit_to_data(recipe, spec, "mask_rcnn", info, args.data_dir)
    model = build_model("mask_rcnn", info, recipe.model_args)
    task = fit_module._task(model, recipe)
    # The same images as the torch side, through the CLI's training pipeline.
    subset = load_split(recipe.data, recipe.train_split, args.data_dir, "instance", recipe.data_args,
                        args.steps * args.batch_size)
    train_ds = task._pipeline(subset.repeat(), recipe.image_size, recipe.batch_size, 0, flip=True,
                              shuffle=True)
    optimizer = build_training_optimizer(recipe, 100 * recipe.epochs)
    model.compile(optimizer=optimizer, jit_compile=bool(args.xla), **task.compile_kwargs())
    model.fit(train_ds, steps_per_epoch=1, epochs=1, verbose=0)  # builds model and optimizer
    step = model.train_function
    iterator = iter(train_ds)
    images, targets = next(iter(train_ds))
    shape = f"images {tuple(images.shape)}, " + ", ".join(
        f"{k} {tuple(v.shape)}" for k, v in targets.items())

    def run():
        for _ in range(args.steps):
            logs = step(iterator)
        float(logs["loss"])

    run()
    return run, {"recipe_model_args": recipe.model_args, "batch": shape,
                 "threads": (tf.config.threading.get_intra_op_parallelism_threads(),
                             tf.config.threading.get_inter_op_parallelism_threads())}


# --------------------------------------------------------------------------- torch worker


def torch_worker(args) -> int:
    import torch
    import torchvision
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = np.load(args.npz)
    count = len([k for k in data.files if k.startswith("image_")])
    images, targets = [], []
    for i in range(count):
        images.append(torch.from_numpy(data[f"image_{i}"]).permute(2, 0, 1).float() / 255.0)
        targets.append({"boxes": torch.from_numpy(data[f"boxes_{i}"]),
                        "labels": torch.from_numpy(data[f"classes_{i}"]),
                        "masks": torch.from_numpy(data[f"masks_{i}"])})
    cases = {}
    for size, rois in zip(args.sizes, args.roi_counts, strict=True):
        backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
        model = MaskRCNN(backbone, num_classes=args.num_classes + 1, min_size=size,
                         max_size=_max_size(size),
                         box_batch_size_per_image=rois).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

        def run(model=model, optimizer=optimizer):
            for start in range(0, args.steps * args.batch_size, args.batch_size):
                stop = start + args.batch_size
                losses = model(images[start:stop], targets[start:stop])
                total = sum(losses.values())
                optimizer.zero_grad()
                total.backward()
                optimizer.step()

        run()
        cases[str(size)] = run
    print(json.dumps({"cases": list(cases), "versions": {"torch": torch.__version__,
                                                         "torchvision": torchvision.__version__},
                      "threads": torch.get_num_threads()}), flush=True)
    return serve_timings(cases)


# --------------------------------------------------------------------------- parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="coco")
    parser.add_argument("--data-dir", default="/work/data/mydata")
    parser.add_argument("--split", default="train")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="steps per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--xla", action="store_true", help="segzoo with jit_compile=True")
    parser.add_argument("--rois", type=int, default=0,
                        help="RoIs per image on both sides (0 = segzoo's recipe at each size)")
    parser.add_argument("--torch-python", default=TORCH_PYTHON)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--roi-counts", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--num-classes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return torch_worker(args)
    print(describe_machine(), flush=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    from segzoo.training.defaults import rois_per_image

    roi_counts = [args.rois or rois_per_image(size) for size in args.sizes]
    tmp = tempfile.mkdtemp(prefix="train_step_small_")
    npz = os.path.join(tmp, "images.npz")
    num_classes, counts = export_images(args.data, args.data_dir, args.split,
                                        args.steps * args.batch_size, npz)
    print(f"{len(counts)} images, {sum(counts)} instances ({sum(counts) / len(counts):.1f} per image), "
          f"{num_classes} classes; batch {args.batch_size}, {args.steps} steps per timing", flush=True)
    torch_proc = None
    if not args.no_torch and os.path.exists(args.torch_python):
        command = [args.torch_python, os.path.abspath(__file__), "--worker", "--npz", npz,
                   "--num-classes", str(num_classes), "--batch-size", str(args.batch_size),
                   "--steps", str(args.steps), "--threads", str(args.threads),
                   "--roi-counts", *map(str, roi_counts),
                   "--sizes", *map(str, args.sizes)]
        torch_proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        header = json.loads(torch_proc.stdout.readline())
        print(f"torch worker: {header['versions']}, {header['threads']} threads", flush=True)
    ours = {}
    for size in args.sizes:
        ours[size], details = segzoo_step(args, size)
        print(f"segzoo {size}: {details}", flush=True)
    samples = {}
    for _ in range(args.rounds):
        for size in args.sizes:
            start = time.perf_counter()
            ours[size]()
            samples.setdefault(("segzoo", size), []).append((time.perf_counter() - start) / args.steps)
            if torch_proc is not None:
                torch_proc.stdin.write(f"{size}\n")
                torch_proc.stdin.flush()
                reply = json.loads(torch_proc.stdout.readline())
                samples.setdefault(("torchvision", size), []).append(reply["seconds"] / args.steps)
    if torch_proc is not None:
        torch_proc.stdin.close()
        torch_proc.wait()
    print(f"load average at end: {os.getloadavg()}")
    for size in args.sizes:
        line = f"train step {size} px, batch {args.batch_size}:"
        seg = statistics.median(samples[("segzoo", size)])
        line += f" segzoo{' (xla)' if args.xla else ''} {seg:.3f} s"
        if ("torchvision", size) in samples:
            tv = statistics.median(samples[("torchvision", size)])
            line += f" | torchvision {tv:.3f} s | torchvision / segzoo = {tv / seg:.2f}x"
        runs = {k[0]: [round(t, 3) for t in v] for k, v in samples.items() if k[1] == size}
        print(f"{line}   (per-round: {runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
