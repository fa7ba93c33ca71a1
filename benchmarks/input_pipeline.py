"""Input pipeline throughput against a training step's consumption, in one run.

    python benchmarks/input_pipeline.py                        # shapes, U-Net 16, 64 px, batch 8
    python benchmarks/input_pipeline.py --data voc_fake --crop 320 --model fcn8s --batch 2

Measures (1) images/s of `semantic_train_pipeline` (full augmentation: random
scale 0.5-2, crop, flip, photometric jitter), on its second epoch so a memoised
source (shapes) shows its steady state, and (2) images/s of the model's
`train_on_batch` on batches already in memory, and prints their ratio (goal >= 5).
`--data voc_fake` writes a fake VOCdevkit of 500x375 JPEGs into a temporary
directory and reads it through the `voc` tfds builder (decoding included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import segzoo
import segzoo.data
from segzoo.data.pipeline import semantic_train_pipeline


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
    parser.add_argument("--data", default="shapes", choices=["shapes", "voc_fake"])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.data == "shapes":
            source = segzoo.data.load("shapes", "train", num_images=args.images)
            num_classes = 4
        else:
            _fake_voc(tmp, args.images)
            source = segzoo.data.load("voc", "train", tmp, download=False)
            num_classes = 21
        ds = semantic_train_pipeline(source, args.crop, args.batch, seed=0, drop_remainder=True)
        for _ in ds:  # first epoch: generation / file cache warm-up
            pass
        start, count = time.perf_counter(), 0
        for images, _ in ds:
            count += int(images.shape[0])
        pipeline_rate = count / (time.perf_counter() - start)
        batches = list(ds.take(2))

    model_args = {"base_filters": 16} if args.model == "unet" and not args.model_arg else {}
    for item in args.model_arg:
        key, value = item.split("=", 1)
        model_args[key] = int(value) if value.isdigit() else value
    model = segzoo.get_model(args.model, num_classes=num_classes, **model_args)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
    )
    images, masks = batches[0]
    for _ in range(2):
        model.train_on_batch(images, masks)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(images, masks)
    step_rate = args.steps * args.batch / (time.perf_counter() - start)
    print(
        f"data={args.data} crop={args.crop} batch={args.batch} model={args.model} {model_args} "
        f"cpus={os.cpu_count()} tf_threads={tf.config.threading.get_inter_op_parallelism_threads()}"
    )
    print(f"input pipeline: {pipeline_rate:8.1f} images/s")
    print(f"training step:  {step_rate:8.1f} images/s")
    print(f"ratio:          {pipeline_rate / step_rate:8.1f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
