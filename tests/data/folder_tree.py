"""A generated semantic `folder` set where classes differ by texture, not by colour.

    DIR/classes.txt                        background, stripes, checks, speckle
    DIR/{train,val}/images/NAME.png        RGB, SIZE x SIZE
    DIR/{train,val}/masks/NAME.png         class ids 0..3 (uint8)

Every region (the background included) is a random base colour drawn from the
same distribution, modulated by its class's texture, so a model must read the
texture: class 1 stripes (random period 5-9 px and orientation), class 2 a
checkerboard (period 6-10 px), class 3 fine speckle (high-frequency noise) on
small blobs only (about 2% of the pixels: the rare class a class-frequency-aware
recipe has to weigh). Blobs are random ellipses, up to 4 an image, later ones
drawn over earlier ones. Deterministic for a given seed.

    python -m tests.data.folder_tree OUT --train 480 --val 96 [--size 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
from PIL import Image

CLASSES = ("background", "stripes", "checks", "speckle")


def _texture(rng, kind, size):
    """A [size, size] float32 texture in [-1, 1] of class `kind` (0 background .. 3 speckle)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:
        smooth = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 6)
        return np.clip(smooth / (smooth.std() + 1e-6) * 0.3, -1, 1)
    if kind == 1:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 9)
        return np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    if kind == 2:
        period = rng.integers(6, 11)
        return np.where(((xx // (period / 2)) + (yy // (period / 2))) % 2 == 0, 1.0, -1.0)
    return np.clip(rng.standard_normal((size, size)).astype(np.float32), -1.5, 1.5) / 1.5


def _region(rng, kind, size):
    """An RGB [size, size, 3] float32 region of class `kind`: base colour x texture."""
    base = rng.uniform(60, 190, 3).astype(np.float32)
    contrast = rng.uniform(25, 55)
    return base + contrast * _texture(rng, kind, size)[..., None]


def draw(rng, size):
    """One (image uint8 [size, size, 3], mask uint8 [size, size]) pair."""
    image = _region(rng, 0, size)
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 5)):
        kind = int(rng.choice([1, 2, 3], p=[0.36, 0.36, 0.28]))
        scale = (0.07, 0.14) if kind == 3 else (0.12, 0.32)
        axes = tuple(int(a) for a in rng.uniform(*scale, 2) * size)
        centre = tuple(int(c) for c in rng.uniform(0.15, 0.85, 2) * size)
        blob = np.zeros((size, size), np.uint8)
        cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        inside = blob.astype(bool)
        image[inside] = _region(rng, kind, size)[inside]
        mask[inside] = kind
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8), mask


def write(out, train=480, val=96, size=128, seed=0):
    """Writes the tree under `out` (see the module docstring); returns `out`."""
    rng = np.random.default_rng(seed)
    with open(os.path.join(_mkdir(out), "classes.txt"), "w") as f:
        f.write("\n".join(CLASSES) + "\n")
    for split, count in (("train", train), ("val", val)):
        images, masks = _mkdir(out, split, "images"), _mkdir(out, split, "masks")
        for i in range(count):
            image, mask = draw(rng, size)
            Image.fromarray(image).save(os.path.join(images, f"{split}_{i:04d}.png"))
            Image.fromarray(mask).save(os.path.join(masks, f"{split}_{i:04d}.png"))
    return out


def _mkdir(*parts):
    path = os.path.join(*parts)
    os.makedirs(path, exist_ok=True)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--val", type=int, default=96)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write(args.out, args.train, args.val, args.size, args.seed)


if __name__ == "__main__":
    main()
