"""RoIAlign speed on a P2-sized map, segzoo beside torchvision in the same run.

    python benchmarks/roi_align.py                  # 2x200x304x256, 1000 boxes, 7x7 and 14x14
    python benchmarks/roi_align.py --repeats 9 --boxes 512

Times `segzoo.blocks.roi_align` (sampling_ratio=2, aligned=True, spatial_scale
1/4) on float32 NHWC features of 2 x 200 x 304 x 256 (an 800 x 1216 image at
stride 4) and 1000 random boxes (seeded; corners uniform in the image, sides 16
to 400 px, clipped). When torch and torchvision are importable
(`pip install -r requirements-bench.txt`), `torchvision.ops.roi_align` runs on
the same numbers converted to NCHW, and the script prints its time, the speed
ratio (torchvision time / segzoo time; goal >= 2, required >= 1.5) and the max
absolute difference of the outputs. Each figure: one warm-up call, then the
best and the median of `--repeats` calls, the implementations taking turns so
that load from other processes hits them alike. Also prints segzoo under
`tf.function(jit_compile=True)` (XLA) for reference (skip with --no-xla).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

# torch/torchvision first: importing torchvision after TensorFlow segfaults here.
try:
    import torch
    import torchvision
except ImportError:
    torch = torchvision = None

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from segzoo.blocks import roi_align  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402


def make_inputs(num_boxes, seed=0, batch=2, height=200, width=304, channels=256, stride=4):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((batch, height, width, channels), dtype=np.float32)
    image_w, image_h = width * stride, height * stride
    xy = rng.uniform(0, [image_w, image_h], size=(num_boxes, 2))
    wh = rng.uniform(16, 400, size=(num_boxes, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [image_w, image_h])], 1).astype(np.float32)
    box_indices = rng.integers(0, batch, num_boxes).astype(np.int32)
    return features, boxes, box_indices


def timed(fns, repeats):
    """Interleaved timing: {name: (best, median, last output)} over `repeats` rounds.

    Each fn is called once to warm up, then the fns take turns, so a load
    spike from other processes hits all of them alike.
    """
    outs = {name: fn() for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t), outs[name]) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 14])
    parser.add_argument("--sampling-ratio", type=int, default=2,
                        help="2 (the required setting) or <= 0 for the adaptive grid")
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile=True run")
    args = parser.parse_args(argv)
    print(describe_machine(), flush=True)

    features, boxes, box_indices = make_inputs(args.boxes)
    scale, ratio = 0.25, args.sampling_ratio
    if torch is None:
        print("torch/torchvision not importable: segzoo only "
              "(pip install -r requirements-bench.txt for the comparison)")
    print(f"features {features.shape} float32 NHWC, {args.boxes} boxes, sampling_ratio={ratio}, "
          f"aligned=True, spatial_scale={scale}; best/median of {args.repeats} interleaved calls after warm-up")
    print(f"tensorflow {tf.__version__}"
          + (f", torch {torch.__version__}, torchvision {torchvision.__version__} "
             f"({torch.get_num_threads()} threads)" if torch is not None else ""))

    tf_features = tf.constant(features)
    tf_boxes = tf.constant(boxes)
    tf_indices = tf.constant(box_indices)
    if torch is not None:
        nchw = torch.from_numpy(features).permute(0, 3, 1, 2).contiguous()
        rois = torch.cat([torch.from_numpy(box_indices).float()[:, None],
                          torch.from_numpy(boxes)], 1)

    for size in args.sizes:
        fns = {"segzoo": lambda s=size: roi_align(tf_features, tf_boxes, tf_indices, s, scale,
                                                  ratio, True).numpy()}
        if not args.no_xla:
            jitted = tf.function(lambda f, b, i, s=size: roi_align(f, b, i, s, scale, ratio, True),
                                 jit_compile=True)
            fns["segzoo XLA"] = lambda j=jitted: j(tf_features, tf_boxes, tf_indices).numpy()
        if torch is not None:
            fns["torchvision"] = lambda s=size: torchvision.ops.roi_align(
                nchw, rois, s, scale, ratio, True).permute(0, 2, 3, 1).numpy()
        with torch.inference_mode() if torch is not None else contextlib.nullcontext():
            results = timed(fns, args.repeats)
        parts = [f"{name} {best:.3f} s (median {median:.3f})"
                 for name, (best, median, _) in results.items()]
        if torch is not None:
            best, median, out = results["segzoo"]
            tv_best, tv_median, tv_out = results["torchvision"]
            parts.append(f"speed-up {tv_best / best:.2f}x (medians {tv_median / median:.2f}x)")
            parts.append(f"max |diff| {np.abs(tv_out - out).max():.2e}")
        print(f"{size}x{size}: " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
