"""`segzoo predict` on one large image (tiled) and on a folder of small ones: time and peak RSS.

    nice -n 10 python benchmarks/predict_large.py --size 10000 --tile 512 --overlap 64
    nice -n 10 python benchmarks/predict_large.py --folder 1000 --folder-size 128

Builds U-Net (`--base-filters`, default 8, 4 classes, untrained: the cost does
not depend on the weights) and saves it as a checkpoint, writes the input
(a SIZE x SIZE RGB PNG of smooth random blobs, or FOLDER JPEGs of
FOLDER_SIZE px), then runs the user's command in a child process,
`python -m segzoo predict --checkpoint C INPUT --out OUT [--tile ... --overlap ...]`,
and reports its wall time, images/s (or megapixels/s) and peak resident memory
(`ru_maxrss` of the child) and its CPU time (on a shared machine the wall time
depends on the load), next to the size of the image and of its labels. Run one
measurement per invocation (`ru_maxrss` is the largest child's).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def _checkpoint(directory, base_filters):
    import segzoo

    model = segzoo.get_model("unet", num_classes=4, base_filters=base_filters)
    path = os.path.join(directory, "unet.keras")
    model.save(path)
    return path


def _large_image(path, size, seed=0):
    """Smooth blobs (compresses well, like a real photo) built in row strips."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (size // 64 + 2, size // 64 + 2, 3), dtype=np.uint8)
    Image.MAX_IMAGE_PIXELS = None
    image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
    image.save(path, compress_level=1)


def _folder(directory, count, size, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    for i in range(count):
        coarse = rng.integers(0, 255, (size // 16 + 2, size // 16 + 2, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(
            os.path.join(directory, f"{i:05d}.jpg"), quality=90)


def _run(args_list):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.monotonic()
    process = subprocess.run([sys.executable, "-m", "segzoo", "predict", *args_list], env=env,
                             capture_output=True, text=True)
    elapsed = time.monotonic() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = "\n".join(process.stderr.strip().splitlines()[-4:])
    tail += f"\nchild CPU time {usage.ru_utime + usage.ru_stime:.1f} s (user + system)"
    return process.returncode, elapsed, usage.ru_maxrss / 1024, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=None, help="one SIZE x SIZE image, tiled")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--folder", type=int, default=None, help="a folder of this many images")
    parser.add_argument("--folder-size", type=int, default=128)
    parser.add_argument("--base-filters", type=int, default=8)
    parser.add_argument("--keep", default=None, help="directory to keep inputs and outputs in")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="segzoo-bench-")
    os.makedirs(work, exist_ok=True)
    checkpoint = _checkpoint(work, args.base_filters)
    if args.size:
        image = os.path.join(work, f"large_{args.size}.png")
        if not os.path.exists(image):
            _large_image(image, args.size)
        code, elapsed, peak, tail = _run(
            ["--checkpoint", checkpoint, image, "--out", os.path.join(work, "out_large"),
             "--tile", str(args.tile), "--overlap", str(args.overlap), "--batch-size", str(args.batch_size)])
        megapixels = args.size * args.size / 1e6
        print(tail)
        print(f"U-Net base_filters={args.base_filters}, {args.size}x{args.size} RGB ({3 * megapixels:.0f} MB "
              f"uint8, labels {megapixels:.0f} MB), tile {args.tile} overlap {args.overlap} batch "
              f"{args.batch_size}: exit {code}, {elapsed:.1f} s ({megapixels / elapsed:.2f} MP/s), "
              f"peak RSS {peak:.0f} MiB")
    if args.folder:
        folder = os.path.join(work, f"folder_{args.folder}_{args.folder_size}")
        if not os.path.isdir(folder):
            _folder(folder, args.folder, args.folder_size)
        code, elapsed, peak, tail = _run(
            ["--checkpoint", checkpoint, folder, "--out", os.path.join(work, "out_folder"),
             "--batch-size", str(args.batch_size)])
        print(tail)
        print(f"U-Net base_filters={args.base_filters}, folder of {args.folder} {args.folder_size}x"
              f"{args.folder_size} JPEGs, batch {args.batch_size}: exit {code}, {elapsed:.1f} s "
              f"({args.folder / elapsed:.1f} images/s incl. start-up), peak RSS {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
