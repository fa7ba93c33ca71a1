"""Input pipeline throughput against a training step's consumption, in one run.

    python benchmarks/input_pipeline.py                        # shapes, U-Net 16, 64 px, batch 8
    python benchmarks/input_pipeline.py --data voc_fake --crop 320 --model fcn8s --batch 2
    python benchmarks/input_pipeline.py --data folder --crop 800 --batch 2 --images 32
    python benchmarks/input_pipeline.py --data coco --crop 800 --batch 2 --images 32 \
        --model mask_rcnn --model-arg backbone=resnet18

`--data folder` / `--data coco` write that many 1067x800 JPEGs (with class-index
PNGs / a COCO instances JSON of 4 polygons an image, the layouts real tools
write) and read them through segzoo's `folder` / `coco` loaders: decoding,
random scale, crop / resize to `--crop` (the short side for coco), flip,
photometric jitter. Prints the machine first, and images/s per core
(`--threads` intra-op threads, default all) next to the train step's images/s.

Measures (1) images/s of `semantic_train_pipeline` (full augmentation: random
scale 0.5-2, crop, flip, photometric jitter), on its second epoch so a memoised
source (shapes) shows its steady state, and (2) images/s of the model's
`train_on_batch` on batches already in memory, and prints their ratio (goal >= 5).
`--data voc_fake` writes a fake VOCdevkit of 500x375 JPEGs into a temporary
directory and reads it through the `voc` tfds builder (decoding included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import segzoo
import segzoo.data
from segzoo.data.pipeline import instance_train_pipeline, semantic_train_pipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402

FAKE_SIZE = (800, 1067)  # H, W: 800 px short side


def _fake_folder(root, count, num_classes=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        os.makedirs(os.path.join(root, "train", sub), exist_ok=True)
    for i in range(count):
        image = rng.integers(0, 256, (*FAKE_SIZE, 3), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(root, "train", "images", f"{i:05d}.jpg"),
                                    quality=90)
        labels = np.zeros(FAKE_SIZE, np.uint8)
        labels[200:600, 300:800] = rng.integers(1, num_classes)
        Image.fromarray(labels).save(os.path.join(root, "train", "masks", f"{i:05d}.png"))


def _fake_coco(root, count):
    from PIL import Image

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 256, (*FAKE_SIZE, 3), dtype=np.uint8)).save(
            os.path.join(root, "train", name), quality=90)
        images.append({"id": i + 1, "file_name": name, "height": FAKE_SIZE[0],
                       "width": FAKE_SIZE[1]})
        for k in range(4):
            x, y = 50 + 240 * k, 100 + 100 * k
            polygon = [x, y, x + 200, y, x + 200, y + 300, x, y + 300]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": [1, 3, 7, 9][k], "segmentation": [polygon],
                                "area": 60000.0, "bbox": [x, y, 200, 300], "iscrowd": 0})
    categories = [{"id": c, "name": f"class{c}"} for c in (1, 3, 7, 9)]
    with open(os.path.join(root, "annotations", "instances_train.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def _fake_voc(root, count):
    from PIL import Image

    from segzoo.data.voc import voc_palette

    rng = np.random.default_rng(0)
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    names = [f"2007_{i:06d}" for i in range(count)]
    for name in names:
        image = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(base, "JPEGImages", name + ".jpg"), quality=90)
        labels = np.zeros((375, 500), np.uint8)
        labels[100:300, 150:400] = rng.integers(1, 21)
        labels[98:100] = 255
        png = Image.fromarray(labels, mode="P")
        png.putpalette(voc_palette().ravel().tolist())
        png.save(os.path.join(base, "SegmentationClass", name + ".png"))
    for split in ("train", "val"):
        with open(os.path.join(base, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shapes",
                        choices=["shapes", "voc_fake", "folder", "coco"])
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = all)")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(describe_machine(), flush=True)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    cores = args.threads or len(os.sched_getaffinity(0))
    instance = args.data == "coco"

    with tempfile.TemporaryDirectory() as tmp:
        if args.data == "shapes":
            source = segzoo.data.load("shapes", "train", num_images=args.images)
            num_classes = 4
        elif args.data == "folder":
            _fake_folder(tmp, args.images)
            source = segzoo.data.load("folder", "train", tmp)
            num_classes = segzoo.data.get_info("folder", tmp).num_classes
        elif args.data == "coco":
            _fake_coco(tmp, args.images)
            source = segzoo.data.load("coco", "train", tmp)
            num_classes = 4
        else:
            _fake_voc(tmp, args.images)
            source = segzoo.data.load("voc", "train", tmp, download=False)
            num_classes = 21
        if instance:
            ds = instance_train_pipeline(source, args.crop, args.batch, seed=0,
                                         drop_remainder=True)
        else:
            ds = semantic_train_pipeline(source, args.crop, args.batch, seed=0,
                                         drop_remainder=True)
        for _ in ds:  # first epoch: generation / file cache warm-up
            pass
        start, count = time.perf_counter(), 0
        for images, _ in ds:
            count += int(images.shape[0])
        if count == 0:
            raise SystemExit(f"--images {args.images} gives no batch of {args.batch}")
        pipeline_rate = count / (time.perf_counter() - start)
        batches = list(ds.take(2))

    model_args = {"base_filters": 16} if args.model == "unet" and not args.model_arg else {}
    for item in args.model_arg:
        key, value = item.split("=", 1)
        model_args[key] = int(value) if value.isdigit() else value
    if instance:
        model_args.setdefault("min_size", args.crop)
        model = segzoo.get_model(args.model, num_classes=num_classes, **model_args)
        model.compile(optimizer="sgd")
    else:
        model = segzoo.get_model(args.model, num_classes=num_classes, **model_args)
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
        )
    images, targets = batches[0]
    for _ in range(2):
        model.train_on_batch(images, targets)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(images, targets)
    step_rate = args.steps * args.batch / (time.perf_counter() - start)
    print(f"data={args.data} crop={args.crop} batch={args.batch} model={args.model} {model_args} "
          f"cores={cores}")
    print(f"input pipeline: {pipeline_rate:8.1f} images/s = {pipeline_rate / cores:6.1f} "
          "images/s per core")
    print(f"training step:  {step_rate:8.1f} images/s")
    print(f"ratio:          {pipeline_rate / step_rate:8.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
