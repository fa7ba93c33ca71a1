"""FCN-8s inference at 500x500: achieved GFLOP/s against this machine's matmul / conv peak.

    python benchmarks/fcn8s_inference.py [--size 500] [--iters 5] [--precision float32 bfloat16]

Prints the machine (CPU, ISA: AMX / AVX512-BF16 / AVX2, threads, versions)
first. For each `--precision` (float32: the fp32 peak and model; bfloat16:
the bf16 matmul and 3x3-conv peak, the model built under `mixed_bfloat16`):

In one run: (1) the fp32 peak, measured as the best GFLOP/s of a large
`tf.matmul` (2 n^3 FLOPs; with and without XLA; measured again after each
model timing and the best kept, since the machine may be shared); (2) the FLOPs of one FCN-8s forward pass, counted
analytically from every convolution's actual input/output shapes
(2 * kh * kw * cin * cout per output pixel for Conv2D; per input pixel for
Conv2DTranspose; the ~363 GFLOPs at 500x500 come from the pad-100 conv1_1
making VGG16 see 698x698); (3) the best wall time of a batch-1 forward pass
of `segzoo.get_model("fcn8s")` (random weights, `tf.function`, with and
without XLA). Prints achieved GFLOP/s and the fraction of peak (goal >= 60%).
A figure, never a pass/fail test: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import segzoo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe_machine  # noqa: E402


def conv_peak_gflops(dtype="float32", shape=(1, 200, 304, 256), iters=5) -> float:
    """Best GFLOP/s of a 3x3, C -> C same-padded convolution on `shape` (the issue's probe)."""
    x = tf.cast(tf.random.normal(shape), dtype)
    w = tf.cast(tf.random.normal((3, 3, shape[-1], shape[-1])), dtype)
    conv = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    conv(x, w).numpy()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        conv(x, w).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * 9 * shape[-1] ** 2 * shape[0] * shape[1] * shape[2] / best / 1e9


def matmul_peak_gflops(n=4096, iters=10, dtype="float32") -> float:
    """Best GFLOP/s of an n x n x n matmul, with and without XLA (the better of the two)."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    best = float("inf")
    for jit in (False, True):
        mm = tf.function(tf.matmul, jit_compile=jit)
        mm(a, b).numpy()
        for _ in range(iters):
            start = time.perf_counter()
            mm(a, b).numpy()
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def conv_flops(model, size) -> float:
    """FLOPs (2 per multiply-add) of every Conv2D / Conv2DTranspose in `model` at `size`x`size`.

    Shapes come from running the model once with a hook on each convolution's call.
    """
    total = [0.0]
    originals = {}

    def hook(layer, original):
        def call(inputs, *args, **kwargs):
            outputs = original(inputs, *args, **kwargs)
            kh, kw = layer.kernel_size
            if isinstance(layer, keras.layers.Conv2DTranspose):
                cout, cin = layer.kernel.shape[2], layer.kernel.shape[3]
                pixels = inputs.shape[1] * inputs.shape[2]
            else:
                cin, cout = layer.kernel.shape[2], layer.kernel.shape[3]
                pixels = outputs.shape[1] * outputs.shape[2]
            total[0] += 2.0 * kh * kw * cin * cout * pixels * inputs.shape[0]
            return outputs
        return call

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            originals[layer] = layer.call
            layer.call = hook(layer, layer.call)
    try:
        model(np.zeros((1, size, size, 3), np.float32), training=False)
    finally:
        for layer, original in originals.items():
            layer.call = original
    return total[0]


def time_forward(model, size, iters, jit) -> float:
    x = tf.random.uniform((1, size, size, 3), 0, 255)
    fn = tf.function(lambda images: model(images, training=False), jit_compile=jit)
    fn(x).numpy()
    fn(x).numpy()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        fn(x).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    from segzoo.training.precision import precision_scope

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=4096)
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16"])
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA-compiled timing")
    args = parser.parse_args(argv)

    print(describe_machine(), flush=True)
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    print(f"device: {devices[0].name}")
    for precision in args.precision:
        peak = max(matmul_peak_gflops(args.matmul_size, dtype=precision),
                   conv_peak_gflops(precision))
        print(f"[{precision}] peak (best of {args.matmul_size}^3 matmul and 3x3 conv 200x304x256): "
              f"{peak:9.1f} GFLOP/s", flush=True)
        with precision_scope(precision):
            model = segzoo.get_model("fcn8s", num_classes=21)
        flops = conv_flops(model, args.size)
        print(f"[{precision}] FCN-8s FLOPs at {args.size}x{args.size}: {flops / 1e9:9.1f} GFLOP "
              "(analytic, convolutions)")
        variants = [("tf.function", False)] + ([] if args.no_xla else [("tf.function + XLA", True)])
        for label, jit in variants:
            try:
                seconds = time_forward(model, args.size, args.iters, jit)
            except Exception as error:  # XLA may be unavailable for an op on this build
                print(f"[{precision}] {label:<20} failed: {type(error).__name__}: "
                      f"{str(error)[:200]}")
                continue
            # The machine may be shared: measure the peak again right after, keep the best.
            peak = max(peak, matmul_peak_gflops(args.matmul_size, iters=5, dtype=precision))
            achieved = flops / seconds / 1e9
            print(f"[{precision}] {label:<20} {seconds * 1e3:9.1f} ms/image  {achieved:9.1f} "
                  f"GFLOP/s  {100 * achieved / peak:5.1f}% of the {precision} peak (goal >= 60%)",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
