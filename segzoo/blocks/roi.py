"""RoI feature extraction on NHWC maps: RoIAlign, RoIPool, RoIWarp, multi-level RoIAlign.

Pure TensorFlow functions with the numbers of torchvision / detectron2 (which
work on NCHW); the Keras layers wrapping them live in `roi_layers.py`.

Conventions shared by every function here:

- `features`: `[N, H, W, C]`, float32, float16 or bfloat16. Sampling and
  averaging run in float32; the result has the features' dtype.
- `boxes`: `[K, 4]` float32 `[x1, y1, x2, y2]` in input-image pixels; multiplied
  by `spatial_scale` (1 / stride) they become feature-map coordinates in which
  pixel `(i, j)` covers `[j, j + 1) x [i, i + 1)`, its centre at `(j + 0.5, i + 0.5)`.
- `box_indices`: `[K]` int32, the image of `features` each box belongs to.
- Result: `[K, out_h, out_w, C]` in input order; `K = 0` gives `[0, out_h, out_w, C]`.
- Gradients flow to `features` (not to `boxes`, as in torchvision).
- Only ops with XLA kernels are used (gathers, matmuls, while loops, sort;
  no `tf.image.crop_and_resize`), so every function runs eagerly, inside
  `tf.function` (static or dynamic K) and under `jit_compile=True`.
- Box and sample coordinates follow torchvision's float32 operation order
  exactly (see `_exact`); under XLA a multiply-add may be fused (last bit).

How it is computed: the maps are flattened to `[N*H*W, C]` so one bilinear
corner is one contiguous C-row, and boxes are processed in chunks (bounded
memory). With a fixed `sampling_ratio` every box has the same sample grid: the
corner rows and separable bilinear weights of all boxes are computed at once,
then each chunk gathers its `4 * grid^2` corner rows per bin and reduces them
with one small matmul per bin. With the adaptive grid (or RoIPool's variable
bins) boxes are sorted by their amount of work and each chunk loops over its
own largest grid, a few samples (cells) per bin per step, masking finished boxes.
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from segzoo.arguments import size_pair
from segzoo.blocks.roi_sampling import (
    _ASSUMED_CHANNELS,
    _add,
    _chunk_size,
    _div,
    _mul,
    _pool_chunk,
    _roi_align_boxes,
    _sorted_map_chunks,
    _sub,
    export_mode,
    round_half_away,
)

# --------------------------------------------------------------------------- validation


def _prepare(features, boxes, box_indices):
    features = tf.convert_to_tensor(features)
    if not features.dtype.is_floating:
        raise ValueError(f"features must be a floating tensor; received dtype {features.dtype.name}.")
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(
            f"features must be [N, H, W, C] (rank 4); received shape {features.shape}."
        )
    boxes = tf.stop_gradient(tf.cast(tf.convert_to_tensor(boxes), tf.float32))
    if boxes.shape.rank is not None and (
        boxes.shape.rank != 2 or (boxes.shape[-1] is not None and boxes.shape[-1] != 4)
    ):
        raise ValueError(f"boxes must be [K, 4] (x1, y1, x2, y2); received shape {boxes.shape}.")
    box_indices = tf.convert_to_tensor(box_indices)
    if box_indices.dtype.is_floating:
        raise ValueError(
            f"box_indices must be an integer tensor [K]; received dtype {box_indices.dtype.name}."
        )
    box_indices = tf.reshape(tf.cast(box_indices, tf.int32), [-1])
    return features, boxes, box_indices


def _channels(features):
    c = features.shape[-1]
    return c if c is not None else tf.shape(features)[-1]


def _flatten(features):
    return tf.reshape(features, tf.stack([-1, tf.shape(features)[-1]]))


def _single_level(features, boxes, box_indices, spatial_scale):
    """(flat [N*H*W, C], per-box map location, per-box scale [K]) for one map."""
    shape = tf.shape(features)
    num = tf.shape(boxes)[0]
    loc = {
        "base": box_indices * (shape[1] * shape[2]),
        "height": tf.fill([num], shape[1]),
        "width": tf.fill([num], shape[2]),
    }
    return _flatten(features), loc, tf.fill([num], tf.constant(spatial_scale, tf.float32))


def _align(flat, loc, scale, boxes, out_h, out_w, sampling_ratio, aligned, channels):
    offset = 0.5 if aligned else 0.0
    x0 = _sub(_mul(boxes[:, 0], scale), offset)
    y0 = _sub(_mul(boxes[:, 1], scale), offset)
    roi_w = _sub(_sub(_mul(boxes[:, 2], scale), offset), x0)
    roi_h = _sub(_sub(_mul(boxes[:, 3], scale), offset), y0)
    if not aligned:
        roi_w = tf.maximum(roi_w, 1.0)
        roi_h = tf.maximum(roi_h, 1.0)
    box = dict(loc, x0=x0, y0=y0, roi_w=roi_w, roi_h=roi_h)
    return _roi_align_boxes(flat, box, out_h, out_w, sampling_ratio, channels)


def _quantised(boxes, scale):
    """torchvision roi_pool's box quantisation: int32 start (x, y) and size (w, h) >= 1."""
    q = tf.cast(round_half_away(_mul(boxes, scale[:, None])), tf.int32)
    x0, y0, x1, y1 = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return x0, y0, tf.maximum(x1 - x0 + 1, 1), tf.maximum(y1 - y0 + 1, 1)


def _pool(flat, loc, scale, boxes, out_h, out_w, channels):
    x0, y0, roi_w, roi_h = _quantised(boxes, scale)
    box = dict(loc, x0=x0, y0=y0, roi_w=roi_w, roi_h=roi_h)
    # Largest bin of a box: ceil(roi / out) + 1 cells per side.
    cost = (roi_h // out_h + 2) * (roi_w // out_w + 2)
    chan_bytes = 4 * (channels if isinstance(channels, int) else _ASSUMED_CHANNELS)
    return _sorted_map_chunks(
        lambda b: _pool_chunk(flat, b, out_h, out_w, channels),
        box, cost, _chunk_size(out_h * out_w * chan_bytes),
        [out_h, out_w, channels if isinstance(channels, int) else None],
    )


def _warp(flat, loc, scale, boxes, out_h, out_w, channels):
    x0, y0, roi_w, roi_h = _quantised(boxes, scale)
    box = dict(
        loc,
        x0=tf.cast(x0, tf.float32) - 0.5, y0=tf.cast(y0, tf.float32) - 0.5,
        roi_w=tf.cast(roi_w, tf.float32), roi_h=tf.cast(roi_h, tf.float32),
    )
    warped = _roi_align_boxes(flat, box, 2 * out_h, 2 * out_w, 1, channels)
    pooled = tf.reduce_max(
        tf.reshape(warped, tf.stack([-1, out_h, 2, out_w, 2, tf.shape(warped)[-1]])), axis=[2, 4]
    )
    if isinstance(channels, int):
        pooled = tf.ensure_shape(pooled, [None, out_h, out_w, channels])
    return pooled


# --------------------------------------------------------------------------- public ops


def _graph_when_eager(fn):
    """Runs `fn` as a (shape-relaxing) tf.function when called eagerly.

    The chunk and sample loops are `tf.while_loop`s; eagerly they would
    dispatch every op from Python. Inside a caller's tf.function (or XLA) the
    function is inlined as is.
    """
    fn = tf.autograph.experimental.do_not_convert(fn)  # no Python control flow on tensors
    graph_fn = tf.function(fn, reduce_retracing=True, autograph=False)
    export_graph_fn = tf.function(fn, reduce_retracing=True, autograph=False)  # its own traces

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if tf.executing_eagerly():
            return (export_graph_fn if export_mode() else graph_fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper



@_graph_when_eager
def roi_align(features, boxes, box_indices, output_size, spatial_scale=1.0,
              sampling_ratio=-1, aligned=True):
    """RoIAlign (Mask R-CNN), exactly torchvision.ops.roi_align / detectron2 ROIAlign on NHWC.

    Args:
        features: `[N, H, W, C]` float tensor (float32 / float16 / bfloat16).
        boxes: `[K, 4]` float32 `[x1, y1, x2, y2]` in input-image pixels.
        box_indices: `[K]` int32, the image in `features` of each box.
        output_size: int or `(out_h, out_w)`.
        spatial_scale: feature pixels per input pixel (1 / stride).
        sampling_ratio: samples per bin side; `<= 0` is adaptive:
            `ceil(roi_h / out_h)` x `ceil(roi_w / out_w)`, chosen per box.
        aligned: `True` (detectron2's fix, default) shifts the scaled box by -0.5
            so that continuous coordinate `x` samples between pixel centres
            `floor(x - 0.5)` and `floor(x - 0.5) + 1`, i.e. pixel centres are at
            `j + 0.5`. `False` is the original Mask R-CNN op (no shift), which
            also clamps roi width and height to at least 1 feature pixel.

    In feature coordinates `start = x1 * spatial_scale - offset`,
    `roi = (x2 * spatial_scale - offset) - start`, `bin = roi / out`. Each output
    bin is the mean of `grid_h x grid_w` bilinear samples at
    `start + p * bin + (i + 0.5) * bin / grid`. A sample outside `[-1, H]` x
    `[-1, W]` adds 0 but still counts in the mean (count = max(grid_h*grid_w, 1));
    one in `[-1, 0)` reads the first row/column and one past `H - 1` the last.
    Under the adaptive grid a box of zero or negative size has no samples -> 0.

    Returns:
        `[K, out_h, out_w, C]` in the features' dtype (computed in float32).
    """
    out_h, out_w = size_pair(output_size, "output_size")
    features, boxes, box_indices = _prepare(features, boxes, box_indices)
    flat, loc, scale = _single_level(features, boxes, box_indices, spatial_scale)
    out = _align(flat, loc, scale, boxes, out_h, out_w, int(sampling_ratio), aligned,
                 _channels(features))
    return tf.cast(out, features.dtype)


@_graph_when_eager
def roi_pool(features, boxes, box_indices, output_size, spatial_scale=1.0):
    """RoIPool (Fast R-CNN), exactly torchvision.ops.roi_pool on NHWC.

    The box is quantised: `x1q = round(x1 * spatial_scale)` (float32 product,
    halves away from zero like `std::round`), likewise y1, x2, y2; the roi is
    `max(x2q - x1q + 1, 1)` by `max(y2q - y1q + 1, 1)` cells. Bin `p` spans cells
    `[floor(p * b), ceil((p + 1) * b))` offset by the roi start, `b = roi / out`
    in float32, clipped to the map. Output = max over the bin's cells; an empty
    bin gives 0. Gradients go to the (first, row-major) maximum of each bin.

    Args/returns as `roi_align`: features `[N, H, W, C]`, boxes `[K, 4]` xyxy
    input pixels, box_indices `[K]` int32 -> `[K, out_h, out_w, C]` (features' dtype).
    """
    out_h, out_w = size_pair(output_size, "output_size")
    features, boxes, box_indices = _prepare(features, boxes, box_indices)
    flat, loc, scale = _single_level(features, boxes, box_indices, spatial_scale)
    out = _pool(flat, loc, scale, boxes, out_h, out_w, _channels(features))
    return tf.cast(out, features.dtype)


@_graph_when_eager
def roi_warp(features, boxes, box_indices, output_size, spatial_scale=1.0):
    """RoIWarp (MNC, as in the Mask R-CNN paper's ablation): quantise, warp, max-pool.

    1. Quantise the box exactly like `roi_pool`: start `(x1q, y1q)`, size
       `(wq, hq)` cells, `x1q = round(x1 * s)`, `wq = max(round(x2 * s) - x1q + 1, 1)`.
    2. Bilinearly warp that crop of cells to `(2*out_h, 2*out_w)` with
       half-pixel centres: sample `(i, j)` reads the map at
       `y = y1q - 0.5 + (i + 0.5) * bh`, `bh = hq / (2*out_h)`, and
       `x = x1q - 0.5 + (j + 0.5) * bw`, `bw = wq / (2*out_w)` (float32, evaluated
       as `((y1q - 0.5) + i * bh) + 0.5 * bh`)
       with RoIAlign's bilinear rule in pixel-index coordinates (edge value up to
       one pixel outside the map, 0 further out). Inside the map this equals
       `cv2.resize(crop, INTER_LINEAR)` / `tf.image.resize(crop, "bilinear")`.
       (It is `roi_align(aligned=True, sampling_ratio=1)` of the quantised box.)
    3. Max-pool 2x2 with stride 2 to `(out_h, out_w)`.

    Args/returns as `roi_align`: `[K, out_h, out_w, C]` in the features' dtype.
    """
    out_h, out_w = size_pair(output_size, "output_size")
    features, boxes, box_indices = _prepare(features, boxes, box_indices)
    flat, loc, scale = _single_level(features, boxes, box_indices, spatial_scale)
    out = _warp(flat, loc, scale, boxes, out_h, out_w, _channels(features))
    return tf.cast(out, features.dtype)


def assign_fpn_levels(boxes, min_level, max_level, canonical_size=224, canonical_level=4,
                      eps=1e-6):
    """Pyramid level of each box, torchvision's LevelMapper (FPN paper eq. 1).

    `level = floor(canonical_level + log2(sqrt(area) / canonical_size) + eps)`,
    `area = (x2 - x1) * (y2 - y1)` in input pixels, clamped to
    `[min_level, max_level]`; float32 arithmetic like torchvision's.

    Args:
        boxes: `[K, 4]` float32 xyxy input pixels.
    Returns:
        `[K]` int32 absolute levels (e.g. 2..5), not offsets from `min_level`.
    """
    if int(min_level) > int(max_level):
        raise ValueError(f"min_level ({min_level}) must be <= max_level ({max_level}).")
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    area = _mul(_sub(boxes[:, 2], boxes[:, 0]), _sub(boxes[:, 3], boxes[:, 1]))
    ratio = _div(tf.sqrt(area), float(canonical_size))
    # log2 of the float32 ratio, correctly rounded to float32 (exact on powers of 2).
    if export_mode():  # float32 log (TFLite has no float64 Log); exact on powers of 2 too
        log2 = tf.math.divide_no_nan(tf.math.log(ratio), tf.constant(math.log(2.0), tf.float32))
    else:
        log2 = tf.cast(tf.math.divide_no_nan(tf.math.log(tf.cast(ratio, tf.float64)),
                                             math.log(2.0)), tf.float32)
    level = tf.floor(_add(_add(float(canonical_level), log2), tf.constant(eps, tf.float32)))
    level = tf.clip_by_value(level, float(min_level), float(max_level))
    # Negative area: NaN in torchvision (the box then gets no level); min_level here.
    level = tf.where(tf.math.is_nan(level), float(min_level), level)
    return tf.cast(level, tf.int32)


def _level_list(features, min_level):
    """features as a list ordered by level: a list/tuple, or a dict keyed like "P2" / 2."""
    if isinstance(features, dict):
        def level_of(key):
            digits = "".join(ch for ch in str(key) if ch.isdigit())
            if not digits:
                raise ValueError(
                    f"features dict keys must name their level (e.g. 'P2' or 2); received {key!r}."
                )
            return int(digits)

        levels = sorted(features, key=level_of)
        expected = list(range(min_level, min_level + len(levels)))
        if [level_of(k) for k in levels] != expected:
            raise ValueError(
                f"features dict must hold consecutive levels from min_level={min_level}; "
                f"received keys {sorted(features, key=level_of)}."
            )
        features = [features[k] for k in levels]
    if not isinstance(features, (list, tuple)) or not features:
        raise ValueError(
            "features must be a non-empty list of [N, H, W, C] maps (finest first, "
            f"features[i] at stride 2**(min_level + i)); received {type(features).__name__}."
        )
    return [tf.convert_to_tensor(f) for f in features]


def _multi_level(features, boxes, box_indices, min_level, canonical_size, canonical_level):
    """(flat, per-box location, per-box scale) with every level stacked in one flat map."""
    max_level = min_level + len(features) - 1
    level = assign_fpn_levels(boxes, min_level, max_level, canonical_size, canonical_level)
    rel = level - min_level
    shapes = [tf.shape(f) for f in features]
    sizes = tf.stack([s[0] * s[1] * s[2] for s in shapes])
    starts = tf.concat([[0], tf.cumsum(sizes)[:-1]], 0)
    heights = tf.stack([s[1] for s in shapes])
    widths = tf.stack([s[2] for s in shapes])
    scales = tf.constant([2.0 ** -(min_level + i) for i in range(len(features))], tf.float32)
    height = tf.gather(heights, rel)
    width = tf.gather(widths, rel)
    loc = {
        "base": tf.gather(starts, rel) + box_indices * height * width,
        "height": height,
        "width": width,
    }
    flats = [_flatten(f) for f in features]
    flat = flats[0] if len(flats) == 1 else tf.concat(flats, 0)
    return flat, loc, tf.gather(scales, rel)


@_graph_when_eager
def multilevel_roi_pooling(features, boxes, box_indices, output_size, method="align",
                           min_level=2, sampling_ratio=-1, aligned=True,
                           canonical_size=224, canonical_level=4):
    """`multilevel_roi_align` with the pooler chosen by `method`: "align" | "pool" | "warp".

    "pool" and "warp" apply `roi_pool` / `roi_warp` on each box's level with
    spatial_scale 1/stride (`sampling_ratio` and `aligned` are then unused).
    """
    if method not in ("align", "pool", "warp"):
        raise ValueError(f"method must be 'align', 'pool' or 'warp'; received {method!r}.")
    out_h, out_w = size_pair(output_size, "output_size")
    min_level = int(min_level)
    features = _level_list(features, min_level)
    channels = [f.shape[-1] for f in features]
    if len({c for c in channels if c is not None}) > 1:
        raise ValueError(f"all feature levels must have the same channels; received {channels}.")
    dtype = features[0].dtype
    features = [tf.cast(f, dtype) for f in features]
    _, boxes, box_indices = _prepare(features[0], boxes, box_indices)
    for f in features[1:]:
        _prepare(f, boxes, box_indices)
    flat, loc, scale = _multi_level(features, boxes, box_indices, min_level,
                                    canonical_size, canonical_level)
    channels = _channels(features[0])
    # torchvision gives a box of negative area a NaN level that matches no level:
    # its output stays 0. Do the same.
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = (area >= 0)[:, None, None, None]
    if method == "align":
        out = _align(flat, loc, scale, boxes, out_h, out_w, int(sampling_ratio), aligned,
                     channels)
    elif method == "pool":
        out = _pool(flat, loc, scale, boxes, out_h, out_w, channels)
    else:
        out = _warp(flat, loc, scale, boxes, out_h, out_w, channels)
    return tf.cast(tf.where(keep, out, 0.0), dtype)


def multilevel_roi_align(features, boxes, box_indices, output_size, min_level=2,
                         sampling_ratio=-1, aligned=True, canonical_size=224,
                         canonical_level=4):
    """RoIAlign over a feature pyramid (torchvision MultiScaleRoIAlign with LevelMapper).

    Args:
        features: list of `[N, H_i, W_i, C]`, finest first; `features[i]` has
            stride `2**(min_level + i)`. A dict keyed "P2", "P3", ... also works.
        boxes: `[K, 4]` float32 xyxy input pixels; box_indices `[K]` int32.
        output_size, sampling_ratio, aligned: as `roi_align`.
        min_level, canonical_size, canonical_level: see `assign_fpn_levels`;
            levels are clamped to `[min_level, min_level + len(features) - 1]`.

    Each box is RoIAligned on its level with spatial_scale `2**-level`.
    Returns `[K, out_h, out_w, C]` in input order, in the features' dtype.
    """
    return multilevel_roi_pooling(
        features, boxes, box_indices, output_size, "align", min_level, sampling_ratio,
        aligned, canonical_size, canonical_level,
    )
