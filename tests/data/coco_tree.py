"""A generated COCO-format set laid out as CVAT / Label Studio / Roboflow exports write it.

    DIR/annotations/instances_{train,val}.json
    DIR/train/*.jpg, DIR/val/*.jpg

Category ids 3 / 7 / 12 (circle, rectangle, triangle: not contiguous, not 1..K),
segmentations as polygons (from the visible part's contours) and as RLE
(uncompressed counts, as CVAT writes masks; compressed strings as pycocotools
writes them), about one image in eight without any object.

    python -m tests.data.coco_tree OUT --train 32 --val 8 [--size 128] [--release]

`--release` names the splits train2017 / val2017 (the COCO release layout).
"""

from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np
from PIL import Image

CATEGORIES = [{"id": 3, "name": "circle"}, {"id": 7, "name": "rectangle"},
              {"id": 12, "name": "triangle"}]  # fmt: skip


def rle_uncompressed(mask) -> dict:
    """COCO uncompressed RLE of a {0, 1} [H, W] mask (column-major run lengths, 0s first)."""
    flat = np.asarray(mask, np.uint8).T.ravel()
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_compressed(mask) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def polygons(mask) -> list:
    """Outer contours of a mask as COCO polygons [[x1, y1, x2, y2, ...], ...] (>= 3 points)."""
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _draw(rng, size, max_objects):
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / size
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-40, 40, (2, 3))
    image = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
    image = image + rng.uniform(-12, 12, (h, w, 3))
    count = 0 if rng.random() < 0.125 else int(rng.integers(1, max_objects + 1))
    visible, labels = [], []
    for _ in range(count):
        kind = int(rng.integers(0, 3))
        r = int(rng.integers(size // 10, size // 4))
        cy, cx = int(rng.integers(r, h - r)), int(rng.integers(r, w - r))
        mask = np.zeros((h, w), np.uint8)
        if kind == 0:
            cv2.circle(mask, (cx, cy), r, 1, -1)
        elif kind == 1:
            ry = int(rng.integers(size // 12, size // 4))
            mask[cy - ry : cy + ry, cx - r : cx + r] = 1
        else:
            points = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
            cv2.fillPoly(mask, [points], 1)
        colour = (base + rng.choice([-1, 1], 3) * rng.uniform(60, 110, 3)) % 256
        image[mask.astype(bool)] = colour
        for earlier in visible:
            earlier[mask.astype(bool)] = 0
        visible.append(mask)
        labels.append(kind)
    keep = [i for i, m in enumerate(visible) if m.sum() >= 16]
    return np.clip(image, 0, 255).astype(np.uint8), [visible[i] for i in keep], [
        labels[i] for i in keep
    ]


def make_coco_tree(root, num_train=12, num_val=6, *, size=64, release=False, seed=0,
                   max_objects=3, extension=".jpg") -> dict:
    """Writes the tree under `root`; returns {split: path of its instances JSON}."""
    rng = np.random.default_rng(seed)
    names = ("train2017", "val2017") if release else ("train", "val")
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    paths, ann_id, image_id = {}, 1, 1
    for split, count in zip(names, (num_train, num_val), strict=True):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, masks, labels = _draw(rng, size, max_objects)
            file_name = f"{split}_{i:04d}{extension}"
            Image.fromarray(image).save(os.path.join(root, split, file_name), quality=95)
            images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
            for mask, label in zip(masks, labels, strict=True):
                ys, xs = np.nonzero(mask)
                x0, y0 = float(xs.min()), float(ys.min())
                bbox = [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]
                style = ann_id % 3
                segmentation = (polygons(mask) if style == 0 else
                                rle_uncompressed(mask) if style == 1 else rle_compressed(mask))
                if not segmentation:
                    segmentation = rle_uncompressed(mask)
                annotations.append({
                    "id": ann_id, "image_id": image_id, "category_id": CATEGORIES[label]["id"],
                    "bbox": bbox, "area": float(mask.sum()), "iscrowd": 0,
                    "segmentation": segmentation,
                })
                ann_id += 1
            image_id += 1
        path = os.path.join(root, "annotations", f"instances_{split}.json")
        with open(path, "w") as f:
            json.dump({"images": images, "annotations": annotations,
                       "categories": CATEGORIES}, f)
        paths[split] = path
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--release", action="store_true")
    args = parser.parse_args(argv)
    paths = make_coco_tree(args.out, args.train, args.val, size=args.size,
                           release=args.release, seed=args.seed)
    print(" ".join(paths.values()))


if __name__ == "__main__":
    main()
