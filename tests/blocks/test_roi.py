"""RoIAlign / RoIPool / RoIWarp / multi-level RoIAlign against loop references.

The references below are plain NumPy loops that follow torchvision's C++ CPU
kernels (`roi_align_forward_kernel_impl` with `pre_calc_for_bilinear_interpolate`
and `roi_pool_forward_kernel_impl`) line by line, on NHWC. Coordinates are
computed in float32 like torchvision's float32 kernel (so boundary cases fall
the same way); values are accumulated in float64.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from segzoo.blocks import roi_sampling
from segzoo.blocks.roi import (
    assign_fpn_levels,
    multilevel_roi_align,
    multilevel_roi_pooling,
    roi_align,
    roi_pool,
    roi_warp,
)
from segzoo.blocks.roi_layers import MultiLevelRoIPooler, RoIAlign, RoIPool, RoIWarp
from tests.layer_testing import check_layer, check_model_round_trip

F32 = np.float32


# ----------------------------------------------------------------------------- references


def _bilinear(img, y, x):
    """torchvision bilinear_interpolate on img [H, W, C] (float64), y/x float32 scalars."""
    height, width = img.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(img.shape[2])
    y = max(y, F32(0))
    x = max(x, F32(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = F32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = F32(x_low)
    else:
        x_high = x_low + 1
    ly, lx = float(y) - y_low, float(x) - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high]
            + ly * hx * img[y_high, x_low] + ly * lx * img[y_high, x_high])


def ref_roi_align(features, boxes, box_indices, out_h, out_w, spatial_scale, sampling_ratio,
                  aligned):
    features = np.asarray(features, np.float64)
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]))
    scale = F32(spatial_scale)
    offset = F32(0.5 if aligned else 0.0)
    for k, (box, n) in enumerate(zip(np.asarray(boxes, F32), box_indices, strict=True)):
        start_w = box[0] * scale - offset
        start_h = box[1] * scale - offset
        roi_w = (box[2] * scale - offset) - start_w
        roi_h = (box[3] * scale - offset) - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, F32(1)), max(roi_h, F32(1))
        bin_h, bin_w = roi_h / F32(out_h), roi_w / F32(out_w)
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_h / F32(out_h)))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_w / F32(out_w)))
        count = max(grid_h * grid_w, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                acc = np.zeros(features.shape[3])
                for iy in range(grid_h):
                    y = start_h + F32(ph) * bin_h + (F32(iy + 0.5) * bin_h) / F32(grid_h)
                    for ix in range(grid_w):
                        x = start_w + F32(pw) * bin_w + (F32(ix + 0.5) * bin_w) / F32(grid_w)
                        acc += _bilinear(features[n], y, x)
                out[k, ph, pw] = acc / count
    return out


def _round_half_away(v):
    """std::round of a float32 value (exact in float64: |v| + 0.5 does not round)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def ref_roi_pool(features, boxes, box_indices, out_h, out_w, spatial_scale):
    features = np.asarray(features, np.float64)
    height, width = features.shape[1:3]
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]))
    scale = F32(spatial_scale)
    for k, (box, n) in enumerate(zip(np.asarray(boxes, F32), box_indices, strict=True)):
        x1, y1, x2, y2 = (_round_half_away(float(c * scale)) for c in box)
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        bin_h, bin_w = F32(roi_h) / F32(out_h), F32(roi_w) / F32(out_w)
        for ph in range(out_h):
            hs = min(max(int(math.floor(F32(ph) * bin_h)) + y1, 0), height)
            he = min(max(int(math.ceil(F32(ph + 1) * bin_h)) + y1, 0), height)
            for pw in range(out_w):
                ws = min(max(int(math.floor(F32(pw) * bin_w)) + x1, 0), width)
                we = min(max(int(math.ceil(F32(pw + 1) * bin_w)) + x1, 0), width)
                if he <= hs or we <= ws:
                    continue
                out[k, ph, pw] = features[n, hs:he, ws:we].max(axis=(0, 1))
    return out


def ref_roi_warp(features, boxes, box_indices, out_h, out_w, spatial_scale):
    """The docstring's formula: quantise like roi_pool, bilinear at half-pixel centres, 2x2 max."""
    features = np.asarray(features, np.float64)
    out = np.zeros((len(boxes), out_h, out_w, features.shape[3]))
    scale = F32(spatial_scale)
    for k, (box, n) in enumerate(zip(np.asarray(boxes, F32), box_indices, strict=True)):
        x1, y1, x2, y2 = (_round_half_away(float(c * scale)) for c in box)
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        warped = np.zeros((2 * out_h, 2 * out_w, features.shape[3]))
        bin_h, bin_w = F32(roi_h) / F32(2 * out_h), F32(roi_w) / F32(2 * out_w)
        for i in range(2 * out_h):
            y = (F32(y1 - 0.5) + F32(i) * bin_h) + F32(0.5) * bin_h
            for j in range(2 * out_w):
                x = (F32(x1 - 0.5) + F32(j) * bin_w) + F32(0.5) * bin_w
                warped[i, j] = _bilinear(features[n], y, x)
        out[k] = warped.reshape(out_h, 2, out_w, 2, -1).max(axis=(1, 3))
    return out


def ref_level(box, k_min, k_max, canonical_size=224, canonical_level=4):
    area = F32(box[2] - box[0]) * F32(box[3] - box[1])
    s = np.sqrt(area, dtype=F32)
    with np.errstate(divide="ignore"):
        lvl = np.floor(F32(canonical_level) + np.log2(s / F32(canonical_size)) + F32(1e-6))
    return int(np.clip(lvl, k_min, k_max))


# ----------------------------------------------------------------------------- helpers


def _random_case(rng, n=2, height=9, width=11, channels=3, num_boxes=12, scale=0.5):
    features = rng.standard_normal((n, height, width, channels)).astype(F32)
    # Boxes in input pixels (1 / scale bigger), some crossing or outside the map.
    xy = rng.uniform(-6, [width / scale + 2, height / scale + 2], size=(num_boxes, 2))
    wh = rng.uniform(0, [width / scale * 0.8, height / scale * 0.8], size=(num_boxes, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(F32)
    box_indices = rng.integers(0, n, num_boxes).astype(np.int32)
    return features, boxes, box_indices


# Boxes in feature pixels (spatial_scale 1) on a 6x7 map: border-crossing, outside,
# degenerate (zero width/height, a point), reversed, tiny, larger than the map.
EDGE_BOXES = np.array([
    [0, 0, 7, 6], [-3, -2, 4, 3], [5, 4, 10, 9], [-1, -1, 0, 0], [7, 6, 8, 7],
    [8.5, 7.5, 12, 11], [-5, -5, -1.5, -1.2], [2, 2, 2, 5], [1, 3, 4, 3], [3, 3, 3, 3],
    [4, 4, 2, 1], [2.2, 1.7, 2.4, 1.9], [-10, -10, 20, 20], [6.25, 5.5, 7.5, 6.75],
    [0.5, 0.5, 6.5, 5.5], [-1.2, -0.9, 0.3, 0.4],
], F32)


# ----------------------------------------------------------------------------- roi_align


def test_roi_align_detectron2_hand_case():
    features = np.arange(25, dtype=F32).reshape(1, 5, 5, 1)
    out = roi_align(features, [[1.0, 1.0, 3.0, 3.0]], [0], 4, 1.0, 0, aligned=True)
    expected = np.array([[4.5, 5.0, 5.5, 6.0], [7.0, 7.5, 8.0, 8.5],
                         [9.5, 10.0, 10.5, 11.0], [12.0, 12.5, 13.0, 13.5]])
    np.testing.assert_allclose(out.numpy()[0, :, :, 0], expected, atol=1e-6)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
def test_roi_align_edge_boxes(aligned, sampling_ratio):
    rng = np.random.default_rng(1)
    features = rng.standard_normal((2, 6, 7, 3)).astype(F32)
    box_indices = np.arange(len(EDGE_BOXES), dtype=np.int32) % 2
    for out_size in [(2, 3), (3, 3)]:
        got = roi_align(features, EDGE_BOXES, box_indices, out_size, 1.0, sampling_ratio,
                        aligned).numpy()
        want = ref_roi_align(features, EDGE_BOXES, box_indices, *out_size, 1.0,
                             sampling_ratio, aligned)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_roi_align_random(seed, aligned, sampling_ratio):
    rng = np.random.default_rng(seed)
    features, boxes, box_indices = _random_case(rng, scale=0.25)
    got = roi_align(features, boxes, box_indices, (3, 4), 0.25, sampling_ratio, aligned)
    want = ref_roi_align(features, boxes, box_indices, 3, 4, 0.25, sampling_ratio, aligned)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)


def test_roi_align_many_boxes_span_several_chunks(monkeypatch):
    monkeypatch.setattr(roi_sampling, "_CHUNK_BYTES", 2048)  # force chunks of 1-2 boxes
    rng = np.random.default_rng(3)
    features, boxes, box_indices = _random_case(rng, num_boxes=9, scale=1.0)
    for ratio in (-1, 2):
        got = roi_align(features, boxes, box_indices, 2, 1.0, ratio, True)
        want = ref_roi_align(features, boxes, box_indices, 2, 2, 1.0, ratio, True)
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5, rtol=1e-5)


def test_roi_align_zero_boxes_and_input_order():
    features = np.random.default_rng(0).standard_normal((2, 8, 8, 5)).astype(F32)
    empty = roi_align(features, np.zeros((0, 4), F32), np.zeros((0,), np.int32), (3, 2))
    assert empty.shape == (0, 3, 2, 5)
    boxes = np.array([[0, 0, 8, 8], [1, 1, 2, 2], [0, 0, 30, 30]], F32)  # adaptive grids 2, 1, 10
    idx = np.array([1, 0, 1], np.int32)
    together = roi_align(features, boxes, idx, 4).numpy()
    for k in range(3):
        alone = roi_align(features, boxes[k:k + 1], idx[k:k + 1], 4).numpy()
        np.testing.assert_allclose(together[k], alone[0], atol=1e-6)


def test_roi_align_float16_and_dtypes():
    rng = np.random.default_rng(4)
    features, boxes, box_indices = _random_case(rng, scale=1.0)
    out16 = roi_align(features.astype(np.float16), boxes, box_indices, 3, 1.0, 2)
    assert out16.dtype == tf.float16
    want = ref_roi_align(features.astype(np.float16), boxes, box_indices, 3, 3, 1.0, 2, True)
    np.testing.assert_allclose(out16.numpy().astype(np.float64), want, atol=5e-3, rtol=5e-3)
    out_bf16 = roi_align(tf.cast(features, tf.bfloat16), boxes, box_indices, 3, 1.0, 2)
    assert out_bf16.dtype == tf.bfloat16


def test_roi_align_tf_function_dynamic_k_and_jit():
    rng = np.random.default_rng(5)
    features, boxes, box_indices = _random_case(rng, scale=1.0, num_boxes=7)
    want = ref_roi_align(features, boxes, box_indices, 2, 3, 1.0, -1, True)
    spec = [tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 4]),
            tf.TensorSpec([None], tf.int32)]
    dynamic = tf.function(lambda f, b, i: roi_align(f, b, i, (2, 3)), input_signature=spec)
    np.testing.assert_allclose(dynamic(features, boxes, box_indices).numpy(), want, atol=1e-5)
    assert dynamic(features, boxes[:0], box_indices[:0]).shape == (0, 2, 3, 3)
    for ratio in (-1, 2):
        jitted = tf.function(lambda f, b, i, r=ratio: roi_align(f, b, i, (2, 3), 1.0, r),
                             jit_compile=True)
        want = ref_roi_align(features, boxes, box_indices, 2, 3, 1.0, ratio, True)
        np.testing.assert_allclose(jitted(features, boxes, box_indices).numpy(), want,
                                   atol=1e-5)


def _adjoint(forward, features, boxes, box_indices, upstream):
    """d<forward(f), upstream>/df by central differences (forward is linear in f, so exact)."""
    grad = np.zeros_like(features, np.float64)
    for i in np.ndindex(features.shape):
        e = np.zeros_like(features, np.float64)
        e[i] = 1.0
        grad[i] = np.sum(forward(e, boxes, box_indices) * upstream)
    return grad


def test_roi_align_gradient_matches_adjoint():
    rng = np.random.default_rng(6)
    features = rng.standard_normal((1, 4, 5, 2)).astype(F32)
    boxes = np.array([[-0.7, 0.3, 3.2, 4.6], [1.1, -1.6, 6.0, 2.2]], F32)
    idx = np.zeros(2, np.int32)
    upstream = rng.standard_normal((2, 2, 2, 2))
    for ratio in (-1, 2):
        f = tf.constant(features)
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(roi_align(f, boxes, idx, 2, 1.0, ratio) * upstream)
        got = tape.gradient(loss, f)
        want = _adjoint(lambda x, b, i, r=ratio: ref_roi_align(x, b, i, 2, 2, 1.0, r, True),
                        features, boxes, idx, upstream)
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), want, atol=1e-5)


def test_roi_align_gradient_single_pass_equals_chunked(monkeypatch):
    # A tape inside the traced function gathers all boxes in one pass; a tape
    # outside it sees the chunked loop. Same values, same gradient.
    monkeypatch.setattr(roi_sampling, "_CHUNK_BYTES", 2 * 2 * 16 * 4 * 3 * 4)  # 4 boxes a chunk
    rng = np.random.default_rng(16)
    features = tf.constant(rng.standard_normal((2, 9, 11, 3)).astype(F32))
    boxes = rng.uniform(-1, 10, (13, 4)).astype(F32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(0.5, 6, (13, 2)).astype(F32)
    idx = (np.arange(13) % 2).astype(np.int32)
    upstream = tf.constant(rng.standard_normal((13, 2, 2, 3)).astype(F32))

    @tf.function
    def inside(f):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = roi_align(f * 1.0, boxes, idx, 2, 0.5, 2)
            loss = tf.reduce_sum(out * upstream)
        return out, tape.gradient(loss, f)

    f = tf.identity(features)
    with tf.GradientTape() as tape:
        tape.watch(f)
        out = roi_align(f, boxes, idx, 2, 0.5, 2)
        loss = tf.reduce_sum(out * upstream)
    want = tf.convert_to_tensor(tape.gradient(loss, f)).numpy()
    got_out, got = inside(features)
    np.testing.assert_allclose(got_out.numpy(), out.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [0, (2, 0), (2, 2, 2), "7", 2.5])
def test_roi_align_rejects_bad_output_size(bad):
    with pytest.raises(ValueError, match="output_size"):
        roi_align(np.zeros((1, 4, 4, 1), F32), [[0, 0, 1, 1]], [0], bad)


# ----------------------------------------------------------------------------- roi_pool, roi_warp


def test_round_half_away_from_zero():
    x = tf.constant([0.5, 1.5, 2.5, -0.5, -1.5, 0.49999997, -2.4999998, 3.0, -3.0], tf.float32)
    np.testing.assert_array_equal(roi_sampling.round_half_away(x).numpy(),
                                  [1, 2, 3, -1, -2, 0, -2, 3, -3])


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_roi_pool_matches_reference(scale):
    rng = np.random.default_rng(7)
    features = rng.standard_normal((2, 6, 7, 3)).astype(F32)
    boxes = np.concatenate([EDGE_BOXES / scale, _random_case(rng, scale=scale)[1]])
    idx = np.arange(len(boxes), dtype=np.int32) % 2
    for out_size in [(2, 2), (3, 4)]:
        got = roi_pool(features, boxes, idx, out_size, scale).numpy()
        want = ref_roi_pool(features, boxes, idx, *out_size, scale)
        np.testing.assert_array_equal(got, want.astype(F32))


def test_roi_pool_rounds_halves_away_and_bins():
    # x1*0.5 = 0.5 -> 1 (std::round), not 0 (half to even): bins start at column 1.
    features = np.arange(2 * 8, dtype=F32).reshape(1, 2, 8, 1)
    got = roi_pool(features, [[1.0, 0.0, 9.0, 3.0]], [0], (1, 2), 0.5).numpy()[0, 0, :, 0]
    # roi cols 1..5 (5 cells), bins [0, 3) and [2, 5) -> cols 1..3 and 3..5 of row 1.
    np.testing.assert_array_equal(got, [11.0, 13.0])


def test_roi_pool_gradient_goes_to_max():
    features = tf.constant(np.arange(16, dtype=F32).reshape(1, 4, 4, 1))
    with tf.GradientTape() as tape:
        tape.watch(features)
        out = roi_pool(features, [[0.0, 0.0, 3.0, 3.0]], [0], 2)
    grad = tape.gradient(out, features).numpy()[0, :, :, 0]
    want = np.zeros((4, 4))
    want[[1, 1, 3, 3], [1, 3, 1, 3]] = 1
    np.testing.assert_array_equal(grad, want)


def test_roi_warp_matches_reference_and_opencv():
    import cv2

    rng = np.random.default_rng(8)
    features = rng.standard_normal((2, 6, 7, 3)).astype(F32)
    idx = np.arange(len(EDGE_BOXES), dtype=np.int32) % 2
    got = roi_warp(features, EDGE_BOXES, idx, (2, 3), 1.0).numpy()
    want = ref_roi_warp(features, EDGE_BOXES, idx, 2, 3, 1.0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Inside the map the warp is a plain bilinear resize of the quantised crop.
    big = rng.standard_normal((1, 20, 24, 4)).astype(F32)
    box = np.array([[6.0, 4.0, 30.0, 26.0]], F32)  # at scale 0.5: cells x 3..15, y 2..13
    crop = big[0, 2:14, 3:16]
    resized = cv2.resize(crop, (2 * 5, 2 * 4), interpolation=cv2.INTER_LINEAR)
    expected = resized.reshape(4, 2, 5, 2, 4).max(axis=(1, 3))
    got = roi_warp(big, box, [0], (4, 5), 0.5).numpy()[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------------------- multi-level


def test_assign_fpn_levels_boundaries():
    sizes = np.array([224, 223.99, 112, 111.99, 448, 447.9, 56, 55.9, 1, 0, 5000], F32)
    boxes = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes, sizes], 1)
    got = assign_fpn_levels(boxes, 2, 5).numpy()
    np.testing.assert_array_equal(got, [4, 3, 3, 2, 5, 4, 2, 2, 2, 2, 5])
    np.testing.assert_array_equal(got, [ref_level(b, 2, 5) for b in boxes])
    rng = np.random.default_rng(9)
    wh = rng.uniform(1, 900, (200, 2)).astype(F32)
    boxes = np.concatenate([np.full_like(wh, 3.5), 3.5 + wh], 1)
    np.testing.assert_array_equal(assign_fpn_levels(boxes, 2, 5).numpy(),
                                  [ref_level(b, 2, 5) for b in boxes])
    np.testing.assert_array_equal(assign_fpn_levels(boxes[:5], 3, 6, 100, 5).numpy(),
                                  [ref_level(b, 3, 6, 100, 5) for b in boxes[:5]])


@pytest.mark.parametrize("method", ["align", "pool", "warp"])
def test_multilevel_matches_single_level_per_box(method):
    rng = np.random.default_rng(10)
    n, c = 2, 3
    pyramid = [rng.standard_normal((n, 64 // 2**i, 48 // 2**i, c)).astype(F32) for i in range(4)]
    sizes = np.array([20, 111.99, 112, 150, 224, 300, 448, 700, 8, 0], F32)
    xy = rng.uniform(-20, 150, (len(sizes), 2)).astype(F32)
    boxes = np.concatenate([xy, xy + sizes[:, None] * [1.0, 0.8]], 1).astype(F32)
    idx = (np.arange(len(sizes)) % n).astype(np.int32)
    got = multilevel_roi_pooling(pyramid, boxes, idx, (3, 2), method, min_level=2,
                                 sampling_ratio=-1, aligned=False).numpy()
    levels = [ref_level(b, 2, 5) for b in boxes]
    for k, level in enumerate(levels):
        f, scale = pyramid[level - 2], 2.0**-level
        if method == "align":
            want = ref_roi_align(f, boxes[k:k + 1], idx[k:k + 1], 3, 2, scale, -1, False)
        elif method == "pool":
            want = ref_roi_pool(f, boxes[k:k + 1], idx[k:k + 1], 3, 2, scale)
        else:
            want = ref_roi_warp(f, boxes[k:k + 1], idx[k:k + 1], 3, 2, scale)
        np.testing.assert_allclose(got[k], want[0], atol=1e-5, err_msg=f"box {k} level {level}")


def test_multilevel_roi_align_dict_input_and_negative_area():
    rng = np.random.default_rng(11)
    pyramid = {f"P{i}": rng.standard_normal((1, 32 // 2**(i - 2), 32 // 2**(i - 2), 2))
               .astype(F32) for i in (3, 2, 4)}
    boxes = np.array([[4, 4, 60, 50], [10, 10, 4, 40], [5, 5, 250, 250]], F32)
    idx = np.zeros(3, np.int32)
    got = multilevel_roi_align(pyramid, boxes, idx, 2, sampling_ratio=2).numpy()
    listed = multilevel_roi_align([pyramid["P2"], pyramid["P3"], pyramid["P4"]], boxes, idx, 2,
                                  sampling_ratio=2).numpy()
    np.testing.assert_array_equal(got, listed)
    np.testing.assert_array_equal(got[1], 0.0)  # negative area: no level in torchvision
    want = ref_roi_align(pyramid["P4"], boxes[2:], idx[2:], 2, 2, 1 / 16, 2, True)
    np.testing.assert_allclose(got[2], want[0], atol=1e-5)
    with pytest.raises(ValueError, match="consecutive levels"):
        multilevel_roi_align({"P2": pyramid["P2"], "P4": pyramid["P4"]}, boxes, idx, 2)


def test_multilevel_jit_and_empty():
    rng = np.random.default_rng(12)
    pyramid = [rng.standard_normal((1, 32 // 2**i, 32 // 2**i, 2)).astype(F32) for i in range(3)]
    boxes = np.array([[0, 0, 100, 90], [3, 3, 20, 20], [1, 2, 200, 210]], F32)
    idx = np.zeros(3, np.int32)
    eager = multilevel_roi_align(pyramid, boxes, idx, 3).numpy()
    jitted = tf.function(lambda b, i: multilevel_roi_align(pyramid, b, i, 3), jit_compile=True)
    np.testing.assert_allclose(jitted(boxes, idx).numpy(), eager, atol=1e-6)
    assert multilevel_roi_align(pyramid, boxes[:0], idx[:0], 3).shape == (0, 3, 3, 2)


# ----------------------------------------------------------------------------- layers


def _layer_inputs(rng, n=2, size=12, channels=3):
    features = rng.standard_normal((n, size, size, channels)).astype(F32)
    boxes = np.array([[1.5, 2.0, 17.0, 21.5], [-3.0, 4.0, 9.0, 30.0]], F32)[:n]
    return features, boxes, np.arange(n, dtype=np.int32)[::-1].copy()


@pytest.mark.parametrize("layer_cls, kwargs, reference", [
    (RoIAlign, dict(output_size=(3, 2), spatial_scale=0.5, sampling_ratio=2, aligned=False),
     lambda f, b, i: ref_roi_align(f, b, i, 3, 2, 0.5, 2, False)),
    (RoIAlign, dict(output_size=3, spatial_scale=0.5),
     lambda f, b, i: ref_roi_align(f, b, i, 3, 3, 0.5, -1, True)),
    (RoIPool, dict(output_size=(2, 3), spatial_scale=0.5),
     lambda f, b, i: ref_roi_pool(f, b, i, 2, 3, 0.5)),
    (RoIWarp, dict(output_size=2, spatial_scale=0.5),
     lambda f, b, i: ref_roi_warp(f, b, i, 2, 2, 0.5)),
])
def test_roi_layers_check_layer(layer_cls, kwargs, reference):
    features, boxes, idx = _layer_inputs(np.random.default_rng(13))
    out = check_layer(layer_cls, kwargs, [features, boxes, idx])
    np.testing.assert_allclose(out, reference(features, boxes, idx), atol=1e-5)


def test_multilevel_pooler_reads_levels_by_name_and_round_trips():
    rng = np.random.default_rng(14)
    pyramid = [rng.standard_normal((3, 32 // 2**i, 32 // 2**i, 2)).astype(F32) for i in range(3)]
    boxes = np.array([[0, 0, 100, 90], [3, 3, 20, 20], [1, 2, 200, 210]], F32)
    idx = np.array([2, 0, 1], np.int32)
    kwargs = dict(output_size=(2, 3), levels=["P2", "P3", "P4"], method="align", sampling_ratio=2,
                  aligned=True, canonical_size=224, canonical_level=4)
    layer = MultiLevelRoIPooler(**kwargs)
    config = layer.get_config()
    assert all(key in config for key in kwargs)
    assert MultiLevelRoIPooler.from_config(config).get_config() == config
    levels = {f"P{i + 2}": keras.Input((f.shape[1], f.shape[2], 2), batch_size=3) for i, f in enumerate(pyramid)}
    box_in = keras.Input((4,), batch_size=3)
    idx_in = keras.Input((), batch_size=3, dtype="int32")
    model = keras.Model([*levels.values(), box_in, idx_in], layer(levels, box_in, idx_in))
    assert model.output.shape == (3, 2, 3, 2)
    out = check_model_round_trip(model, [*pyramid, boxes, idx])
    expected = multilevel_roi_align(pyramid, boxes, idx, (2, 3), sampling_ratio=2).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # Keys, not positions: a shuffled dict with an extra level gives the same numbers.
    named = {"P6": np.zeros((3, 1, 1, 2), F32), "P4": pyramid[2], "P2": pyramid[0], "P3": pyramid[1]}
    np.testing.assert_allclose(layer(named, boxes, idx).numpy(), expected, atol=1e-6)
    # Batched boxes [B, R, 4] (box r of image b reads image b) keep their leading shape.
    batched = layer(named, np.stack([boxes[:2]] * 3))
    assert batched.shape == (3, 2, 2, 3, 2)
    np.testing.assert_allclose(batched.numpy()[2, 1], multilevel_roi_align(
        pyramid, boxes[1:2], np.array([2], np.int32), (2, 3), sampling_ratio=2).numpy()[0], atol=1e-6)
    pool = MultiLevelRoIPooler(2, ["P2", "P3", "P4"], method="pool")(named, boxes, idx).numpy()
    np.testing.assert_array_equal(
        pool, multilevel_roi_pooling(pyramid, boxes, idx, 2, "pool").numpy())
    with pytest.raises(ValueError, match="method"):
        MultiLevelRoIPooler(2, method="max")
    with pytest.raises(ValueError, match="consecutive"):
        MultiLevelRoIPooler(2, levels=["P2", "P4"])
    with pytest.raises(ValueError, match="lacks levels"):
        MultiLevelRoIPooler(2, levels=["P2", "P3", "P4", "P5"])(named, boxes, idx)
    with pytest.raises(ValueError, match="dict"):
        layer(pyramid, boxes, idx)


def test_layer_mixed_precision_keeps_boxes_float32():
    rng = np.random.default_rng(15)
    features = rng.standard_normal((1, 300, 300, 2)).astype(np.float16)
    boxes = np.array([[1000.3, 1001.1, 1100.7, 1150.2]], F32)  # float16 would round these
    layer = RoIAlign(4, spatial_scale=0.25, sampling_ratio=2, dtype="mixed_float16")
    out = layer(features, boxes, np.zeros(1, np.int32))
    assert out.dtype == "float16"
    want = ref_roi_align(features, boxes, [0], 4, 4, 0.25, 2, True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).astype(np.float64), want,
                               atol=2e-3, rtol=2e-3)
