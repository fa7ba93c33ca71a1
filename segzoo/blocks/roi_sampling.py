"""The sampling engine behind `segzoo.blocks.roi` (private; use the ops there).

- `_exact` and friends: float32 arithmetic in torchvision's operation order,
  safe from graph rewrites.
- Bilinear corners along one axis (torchvision's `bilinear_interpolate`).
- Chunked processing of boxes (bounded memory), sorted by work where the
  per-box loop length varies.
- RoIAlign of boxes given in feature coordinates (fixed or adaptive grid) and
  RoIPool's per-bin max.

Per-box fields are dicts of `[K]` tensors: base (int32 flat row of the box's
map pixel (0, 0)), height, width (int32 map size) and the box geometry.
"""

from __future__ import annotations

import contextlib
import threading

import tensorflow as tf
from tensorflow.python.eager import record

# Bytes of gathered corner rows one chunk may hold: bounds peak memory (the
# gather is memory-bound; 8-16 MiB measured fastest on CPU, 1-4 MiB and 32+ slower).
_CHUNK_BYTES = 16 * 2**20
_MAX_CHUNK = 256
# Under a gradient tape, up to this many bytes of corner rows are gathered in one
# pass: the gradient of a chunk loop adds a dense gradient of the whole feature map
# per chunk (74 MB for R50-FPN at 800x1088), one pass gives one sparse gradient
# (512 box RoIs of a training step: RoIAlign forward + backward 0.54 -> 0.20 s).
_SINGLE_PASS_BYTES = 512 * 2**20
_SAMPLES_PER_STEP = 4  # adaptive grid: samples per bin gathered per loop step
_ASSUMED_CHANNELS = 256  # for sizing chunks when C is not known statically
_FLT_MAX = 3.4028234663852886e38


# --------------------------------------------------------------------------- export mode

_EXPORT = threading.local()


@contextlib.contextmanager
def roi_export_mode(enabled=True):
    """Functions traced inside use the export path of RoIAlign / RoIPool / the level mapper.

    The export path computes in plain float32 (no float64 round trip: TFLite's
    builtin Add/Sub/Mul/Div/Log have no float64 kernels) and keeps every tensor
    at rank <= 5 (TFLite's builtin STRIDED_SLICE and broadcasting stop at 5-D).
    Its results equal the exact path's within 1e-4 (a sample position may differ
    by a float32 ulp where graph rewrites regroup the arithmetic). Read while
    tracing: a `tf.function` traced outside keeps the exact path.
    """
    previous = getattr(_EXPORT, "enabled", False)
    _EXPORT.enabled = bool(enabled)
    try:
        yield
    finally:
        _EXPORT.enabled = previous


def export_mode() -> bool:
    """True while tracing inside `roi_export_mode()`."""
    return getattr(_EXPORT, "enabled", False)


# --------------------------------------------------------------------------- chunking


def _chunk_size(bytes_per_box):
    return int(max(1, min(_MAX_CHUNK, _CHUNK_BYTES // max(1, bytes_per_box))))


def _map_chunks(fn, per_box, chunk, out_tail, single_pass=0):
    """Runs `fn(dict of [kc, ...] tensors) -> [kc, *out_tail]` over chunks of boxes.

    `per_box` maps names to `[K, ...]` tensors; padding rows are zeros except
    `height`/`width` (1), which keeps their gather indices valid. Up to
    `single_pass` boxes (when more than `chunk`) go through `fn` in one call.
    """
    first = next(iter(per_box.values()))
    num = tf.shape(first)[0]
    static = first.shape[0]
    if static is not None and static <= max(chunk, single_pass):
        return fn(per_box)
    if static is None and single_pass > chunk:
        return tf.cond(num <= single_pass, lambda: fn(per_box),
                       lambda: _map_chunks(fn, per_box, chunk, out_tail))
    num_chunks = (num + chunk - 1) // chunk
    pad = num_chunks * chunk - num

    def split(key, value):
        padded = tf.pad(value, [[0, pad]] + [[0, 0]] * (value.shape.rank - 1),
                        constant_values=1 if key in ("height", "width") else 0)
        return tf.reshape(padded, tf.concat([[num_chunks, chunk], tf.shape(value)[1:]], 0))

    out = tf.map_fn(
        fn,
        {key: split(key, value) for key, value in per_box.items()},
        fn_output_signature=tf.TensorSpec([chunk, *out_tail], tf.float32),
        parallel_iterations=1,
    )
    out = tf.reshape(out, tf.concat([[-1], tf.shape(out)[2:]], 0))
    return out[:num]


def _sorted_map_chunks(fn, per_box, cost, chunk, out_tail):
    """`_map_chunks` over boxes sorted by `cost`, so a chunk's loop bound fits all its boxes."""
    order = tf.argsort(cost, stable=True)
    sorted_box = {key: tf.gather(value, order) for key, value in per_box.items()}
    out = _map_chunks(fn, sorted_box, chunk, out_tail)
    return tf.gather(out, tf.argsort(order))


# --------------------------------------------------------------------------- bilinear sampling


def _axis_corners(coord, size):
    """torchvision's bilinear_interpolate along one axis.

    coord float32 [...]; size int32 broadcastable. Returns (low, high) int32 and
    (w_low, w_high) float32; weights are 0 where the sample is outside
    [-1, size] (it then adds 0 to the sum but still counts in the average).
    """
    size_f = tf.cast(size, tf.float32)
    valid = (coord >= -1.0) & (coord <= size_f)
    c = tf.where(valid, tf.maximum(coord, 0.0), 0.0)  # [-1, 0) -> 0 (also NaN -> 0, masked)
    low = tf.floor(c)
    at_end = low >= size_f - 1.0  # y_low >= H - 1: use row H - 1 with full weight
    low = tf.where(at_end, size_f - 1.0, low)
    c = tf.where(at_end, low, c)
    high = tf.where(at_end, low, low + 1.0)
    frac = _sub(c, low)
    w_low = tf.where(valid, _sub(1.0, frac), 0.0)
    w_high = tf.where(valid, frac, 0.0)
    return tf.cast(low, tf.int32), tf.cast(high, tf.int32), w_low, w_high


def _gather_rows(flat, index):
    return tf.cast(tf.gather(flat, index), tf.float32)


def _weighted_sum(weights, rows):
    """weights [..., S], rows [..., S, C] -> [..., C]."""
    return tf.squeeze(tf.matmul(weights[..., None, :], rows), axis=-2)


def _exact(fn, *args):
    """`fn` on float32 values, correctly rounded to float32 like a C++ float op.

    Computed in float64 and rounded back: the same value as the float32 op,
    but graph rewrites cannot regroup it. (In graphs grappler turns `x / c` into
    `x * (1 / c)` and reorders sums such as `start + p * bin + o * bin`, which
    moves samples by an ulp against torchvision's float32 kernel. XLA may still
    contract a multiply-add into an FMA: last-bit differences under jit_compile.)
    """
    if export_mode():
        return fn(*[tf.cast(a, tf.float32) for a in args])
    return tf.cast(fn(*[tf.cast(a, tf.float64) for a in args]), tf.float32)


def _add(a, b):
    return _exact(tf.add, a, b)


def _sub(a, b):
    return _exact(tf.subtract, a, b)


def _mul(a, b):
    return _exact(tf.multiply, a, b)


def _div(a, b):
    return _exact(tf.math.divide_no_nan, a, b)


def _sample_coords(start, bin_size, index, offset, grid):
    """`start + index * bin + (offset * bin) / grid`, torchvision's float32 steps."""
    return _add(_add(start, _mul(index, bin_size)), _div(_mul(offset, bin_size), grid))


def _fixed_corners(box, out_h, out_w, grid):
    """Corner rows/weights of every box's `grid` x `grid` samples per bin (all boxes at once).

    Returns row_index `[K, out_h, grid, 2]` (flat row of the sample row's
    corner at column 0), cols `[K, out_w, grid, 2]`, and the weights wy, wx of
    the same shapes (wy holds 1 / count).
    """
    g = float(grid)
    offs = (tf.range(grid, dtype=tf.float32) + 0.5)[None, None, :]
    ph = tf.range(out_h, dtype=tf.float32)[None, :, None]
    pw = tf.range(out_w, dtype=tf.float32)[None, :, None]
    yy = _sample_coords(box["y0"][:, None, None], box["bin_h"][:, None, None], ph, offs, g)
    xx = _sample_coords(box["x0"][:, None, None], box["bin_w"][:, None, None], pw, offs, g)
    ylo, yhi, wylo, wyhi = _axis_corners(yy, box["height"][:, None, None])
    xlo, xhi, wxlo, wxhi = _axis_corners(xx, box["width"][:, None, None])
    base = box["base"][:, None, None, None]
    width = box["width"][:, None, None, None]
    return {
        "row_index": base + tf.stack([ylo, yhi], -1) * width,
        "cols": tf.stack([xlo, xhi], -1),
        "wy": tf.stack([wylo, wyhi], -1) * (1.0 / (g * g)),
        "wx": tf.stack([wxlo, wxhi], -1),
    }


def _align_fixed_chunk(flat, corners, out_h, out_w, grid):
    """Gathers a chunk's 4*grid^2 corner rows per bin and sums them with their weights."""
    if export_mode():
        return _align_fixed_chunk_5d(flat, corners, out_h, out_w, grid)
    rows = corners["row_index"][:, :, None, :, :, None, None]
    cols = corners["cols"][:, None, :, None, None, :, :]
    weight = corners["wy"][:, :, None, :, :, None, None] * corners["wx"][:, None, :, None, None]
    samples = 4 * grid * grid
    index = tf.reshape(rows + cols, [-1, out_h, out_w, samples])
    weight = tf.reshape(weight, [-1, out_h, out_w, samples])
    return _weighted_sum(weight, _gather_rows(flat, index))


def _align_fixed_chunk_5d(flat, corners, out_h, out_w, grid):
    """`_align_fixed_chunk` with tensors of rank <= 5, the samples in the same order.

    A bin's 4*grid^2 samples are (sample row, corner row) x (sample column,
    corner column): `[K, out_h, 2g]` row terms and `[K, out_w, 2g]` column terms
    broadcast to `[K, out_h, out_w, 2g, 2g]` instead of a 7-D outer product.
    """
    k = tf.shape(corners["row_index"])[0]
    side = 2 * grid
    rows = tf.reshape(corners["row_index"], tf.stack([k, out_h, 1, side, 1]))
    cols = tf.reshape(corners["cols"], tf.stack([k, 1, out_w, 1, side]))
    wy = tf.reshape(corners["wy"], tf.stack([k, out_h, 1, side, 1]))
    wx = tf.reshape(corners["wx"], tf.stack([k, 1, out_w, 1, side]))
    index = tf.reshape(rows + cols, tf.stack([k, out_h, out_w, side * side]))
    weight = tf.reshape(wy * wx, tf.stack([k, out_h, out_w, side * side]))
    return _weighted_sum(weight, _gather_rows(flat, index))


def _align_adaptive_chunk(flat, box, out_h, out_w, channels):
    """Box k has grid_h[k] x grid_w[k] samples per bin; a loop step takes the next
    `_SAMPLES_PER_STEP` of them (row-major) in every bin, masking finished boxes."""
    per_step = _SAMPLES_PER_STEP
    grid_h, grid_w = box["grid_h"], box["grid_w"]  # float32, integral, may be <= 0
    grid_w_int = tf.maximum(tf.cast(grid_w, tf.int32), 1)[:, None]
    num_samples = tf.cast(tf.maximum(grid_h, 0.0) * tf.maximum(grid_w, 0.0), tf.int32)
    inv_count = _div(1.0, tf.maximum(grid_h * grid_w, 1.0))[:, None]
    ph = tf.range(out_h, dtype=tf.float32)[None, :, None]
    pw = tf.range(out_w, dtype=tf.float32)[None, :, None]
    k = tf.shape(grid_h)[0]
    steps = (tf.reduce_max(tf.concat([num_samples, [0]], 0)) + per_step - 1) // per_step
    base = box["base"][:, None, None, None, None]
    width = box["width"][:, None, None, None, None]

    def body(step, acc):
        t = step * per_step + tf.range(per_step)[None, :]  # [k, S] sample numbers
        iy = t // grid_w_int
        ix = t - iy * grid_w_int
        active = tf.where(t < num_samples[:, None], inv_count, 0.0)  # [k, S]
        offs_y = (tf.cast(iy, tf.float32) + 0.5)[:, None, :]
        offs_x = (tf.cast(ix, tf.float32) + 0.5)[:, None, :]
        yy = _sample_coords(box["y0"][:, None, None], box["bin_h"][:, None, None], ph, offs_y,
                            grid_h[:, None, None])  # [k, out_h, S]
        xx = _sample_coords(box["x0"][:, None, None], box["bin_w"][:, None, None], pw, offs_x,
                            grid_w[:, None, None])  # [k, out_w, S]
        ylo, yhi, wylo, wyhi = _axis_corners(yy, box["height"][:, None, None])
        xlo, xhi, wxlo, wxhi = _axis_corners(xx, box["width"][:, None, None])
        # Corners (low, low), (low, high), (high, low), (high, high) of each sample.
        rows = tf.stack([ylo, ylo, yhi, yhi], -1)[:, :, None]  # [k, out_h, 1, S, 4]
        cols = tf.stack([xlo, xhi, xlo, xhi], -1)[:, None]  # [k, 1, out_w, S, 4]
        wy = (tf.stack([wylo, wylo, wyhi, wyhi], -1) * active[:, None, :, None])[:, :, None]
        wx = tf.stack([wxlo, wxhi, wxlo, wxhi], -1)[:, None]
        index = tf.reshape(base + rows * width + cols, [k, out_h, out_w, 4 * per_step])
        weight = tf.reshape(wy * wx, [k, out_h, out_w, 4 * per_step])
        return step + 1, acc + _weighted_sum(weight, _gather_rows(flat, index))

    acc0 = tf.zeros(tf.stack([k, out_h, out_w, channels]), tf.float32)
    _, out = tf.while_loop(
        lambda step, acc: step < steps, body, [tf.constant(0), acc0],
        parallel_iterations=1,
    )
    return out


def _roi_align_boxes(flat, box, out_h, out_w, sampling_ratio, channels):
    """RoIAlign of boxes already in feature coordinates.

    box: dict of [K] tensors: base (int32 row of pixel (0, 0) of the box's map in
    `flat`), height, width (int32 map size), y0, x0 (float32 roi start),
    roi_h, roi_w (float32 roi size). Returns float32 [K, out_h, out_w, C].
    """
    chan_bytes = 4 * (channels if isinstance(channels, int) else _ASSUMED_CHANNELS)
    box = dict(box)
    box["bin_h"] = _div(box.pop("roi_h"), float(out_h))
    box["bin_w"] = _div(box.pop("roi_w"), float(out_w))
    out_tail = [out_h, out_w, channels if isinstance(channels, int) else None]
    if sampling_ratio > 0:
        box_bytes = out_h * out_w * 4 * sampling_ratio**2 * chan_bytes
        single = _SINGLE_PASS_BYTES // box_bytes if record.should_record_backprop([flat]) else 0
        return _map_chunks(
            lambda c: _align_fixed_chunk(flat, c, out_h, out_w, sampling_ratio),
            _fixed_corners(box, out_h, out_w, sampling_ratio), _chunk_size(box_bytes), out_tail,
            single_pass=single,
        )
    # Adaptive: ceil(roi_size / output_size) samples per bin side, per box
    # (roi_size / output_size is bin_h, computed the same way as torchvision).
    box["grid_h"] = tf.math.ceil(box["bin_h"])
    box["grid_w"] = tf.math.ceil(box["bin_w"])
    cost = tf.maximum(box["grid_h"], 0.0) * tf.maximum(box["grid_w"], 0.0)
    chunk = _chunk_size(out_h * out_w * 4 * _SAMPLES_PER_STEP * chan_bytes)
    return _sorted_map_chunks(
        lambda b: _align_adaptive_chunk(flat, b, out_h, out_w, channels),
        box, cost, chunk, out_tail,
    )


def round_half_away(x):
    """`std::round` on float32: halves away from zero (tf.round rounds half to even)."""
    whole = tf.math.floor(tf.abs(x))
    up = tf.cast(tf.abs(x) - whole >= 0.5, x.dtype)
    return tf.math.sign(x) * (whole + up)


def _pool_chunk(flat, box, out_h, out_w, channels):
    """Max over each bin's cells, one cell per bin per loop step (row-major, like torchvision)."""
    k = tf.shape(box["base"])[0]

    def edges(start, size, bins, limit):
        p = tf.range(bins, dtype=tf.float32)[None, :]
        bin_size = _div(tf.cast(size, tf.float32)[:, None], float(bins))
        lo = tf.cast(tf.floor(_mul(p, bin_size)), tf.int32) + start[:, None]
        hi = tf.cast(tf.math.ceil(_mul(p + 1.0, bin_size)), tf.int32) + start[:, None]
        return (tf.clip_by_value(lo, 0, limit[:, None]), tf.clip_by_value(hi, 0, limit[:, None]))

    hs, he = edges(box["y0"], box["roi_h"], out_h, box["height"])  # [k, out_h]
    ws, we = edges(box["x0"], box["roi_w"], out_w, box["width"])  # [k, out_w]
    bh = tf.maximum(he - hs, 0)[:, :, None]
    bw = tf.maximum(we - ws, 0)[:, None, :]
    area = bh * bw  # [k, out_h, out_w]; 0 = empty bin
    steps = tf.reduce_max(tf.concat([tf.reshape(area, [-1]), [0]], 0))
    base = box["base"][:, None, None]
    width = box["width"][:, None, None]

    def body(step, acc):
        dh = step // tf.maximum(bw, 1)
        dw = step - dh * bw
        valid = step < area
        row = tf.where(valid, hs[:, :, None] + dh, 0)
        col = tf.where(valid, ws[:, None, :] + dw, 0)
        value = _gather_rows(flat, base + row * width + col)
        take = valid[..., None] & (value > acc)
        return step + 1, tf.where(take, value, acc)

    acc0 = tf.fill(tf.stack([k, out_h, out_w, channels]), tf.constant(-_FLT_MAX, tf.float32))
    _, out = tf.while_loop(lambda step, acc: step < steps, body, [tf.constant(0), acc0],
                           parallel_iterations=1)
    return tf.where((area > 0)[..., None], out, 0.0)
