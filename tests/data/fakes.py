"""Tiny fake copies of the real dataset layouts, written into a test's tmp_path."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from PIL import Image

from segzoo.data.voc import voc_palette

VOC_NAMES = ["2007_000001", "2007_000002", "2007_000003", "2007_000004", "2007_000005",
             "2007_000006"]  # fmt: skip
VOC_SPLITS = {
    "train": VOC_NAMES[:3],
    "val": VOC_NAMES[3:5],
    "trainval": VOC_NAMES[:5],
}  # VOC_NAMES[5] is in JPEGImages only: not in any segmentation split.
GRAYSCALE = "2007_000002"


def save_palette_png(path, indices):
    img = Image.fromarray(indices.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().ravel().tolist())
    img.save(path)


def make_voc(root, seed=0):
    """VOCdevkit/VOC2012 with palette PNGs (255 borders), one grayscale JPEG.

    Returns {name: (image uint8 [H, W, 3] as decoded, class map, object map, classes)}.
    """
    rng = np.random.default_rng(seed)
    base = os.path.join(root, "VOCdevkit", "VOC2012")
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    truth = {}
    for i, name in enumerate(VOC_NAMES):
        h, w = 24 + 2 * i, 32 - i
        classes_map = np.zeros((h, w), np.uint8)
        object_map = np.zeros((h, w), np.uint8)
        classes = []
        for k in range(i % 3 + 1):  # 1..3 objects
            cls = int(rng.integers(1, 21))
            y0, x0 = 2 + 6 * k, 3 + 7 * k
            classes_map[y0 : y0 + 5, x0 : x0 + 6] = cls
            object_map[y0 : y0 + 5, x0 : x0 + 6] = k + 1
            classes.append(cls)
        # void borders around each object, like VOC
        border = np.zeros((h, w), bool)
        for k in range(len(classes)):
            y0, x0 = 2 + 6 * k, 3 + 7 * k
            border[y0 - 1 : y0 + 6, x0 - 1 : x0 + 7] = True
        border &= object_map == 0
        classes_map[border] = 255
        object_map[border] = 255
        save_palette_png(os.path.join(base, "SegmentationClass", name + ".png"), classes_map)
        save_palette_png(os.path.join(base, "SegmentationObject", name + ".png"), object_map)
        path = os.path.join(base, "JPEGImages", name + ".jpg")
        if name == GRAYSCALE:
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L").save(path)
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        # TF's JPEG decoder (what tfds uses) differs from PIL's by a few levels.
        decoded = tf.io.decode_jpeg(tf.io.read_file(path), channels=3).numpy()
        truth[name] = (decoded, classes_map, object_map, np.array(classes, np.int32))
    for split, names in VOC_SPLITS.items():
        with open(os.path.join(base, "ImageSets", "Segmentation", split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    return truth


def make_sbd(root, names_train, names_val, seed=1):
    """benchmark_RELEASE/dataset with cls/*.mat (GTcls.Segmentation), img/*.jpg, lists."""
    import scipy.io

    rng = np.random.default_rng(seed)
    base = os.path.join(root, "benchmark_RELEASE", "dataset")
    os.makedirs(os.path.join(base, "cls"), exist_ok=True)
    os.makedirs(os.path.join(base, "img"), exist_ok=True)
    truth = {}
    for name in list(names_train) + list(names_val):
        h, w = 20, 26
        seg = rng.integers(0, 21, (h, w)).astype(np.uint8)
        scipy.io.savemat(
            os.path.join(base, "cls", name + ".mat"),
            {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.unique(seg)}},
        )
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            os.path.join(base, "img", name + ".jpg")
        )
        truth[name] = seg
    for split, names in (("train", names_train), ("val", names_val)):
        with open(os.path.join(base, split + ".txt"), "w") as f:
            f.write("\n".join(names) + "\n")
    return truth
