"""Keypoint R-CNN ops (He et al. 2017, sec. "Human Pose Estimation"): targets, loss, decoding.

Each of the P keypoints of an instance is one-hot encoded in an m x m
heatmap (m = 56) inside its RoI: exactly one foreground cell, every other
cell background. The loss is a softmax cross-entropy over the m * m cells of
each keypoint's heatmap (not a per-pixel sigmoid), so the head learns to put
one peak per keypoint. These are torchvision's `keypoints_to_heatmap`,
`keypointrcnn_loss` and `heatmaps_to_keypoints`
(torchvision/models/detection/roi_heads.py), in TF, on NHWC heatmaps
`[..., m, m, P]`, with any leading dimensions (`[R, ...]` or padded
`[B, R, ...]`).

Coordinates: keypoints and RoIs are float32 input pixels, RoIs
`[x1, y1, x2, y2]`. A keypoint at x falls in heatmap column
`floor((x - x1) * m / (x2 - x1))` (a keypoint exactly on the right edge
x == x2 goes to column m - 1); a decoded column c maps back to the cell
centre, `x1 + (c + 0.5) * width / ceil(width)` after the heatmap is resized
to the RoI's size (Heckbert's continuous = discrete + 0.5).
"""

from __future__ import annotations

import tensorflow as tf

# torch's bicubic (upsample_bicubic2d) uses the Keys kernel with a = -0.75;
# tf.image.resize's "bicubic" uses a = -0.5 and another border rule, hence
# our own interpolation matrices below.
_CUBIC_A = -0.75


def keypoints_to_heatmap_targets(keypoints, rois, heatmap_size=56):
    """Heatmap cell index of each keypoint inside its RoI (torchvision's keypoints_to_heatmap).

    Args:
        keypoints: float32 `[..., P, 3]`: (x, y, visibility) in input pixels;
            visibility > 0 (COCO's 1 "labelled, occluded" and 2 "visible")
            counts, 0 means not labelled.
        rois: float32 `[..., 4]` `[x1, y1, x2, y2]` input pixels, same leading
            dimensions as `keypoints`.
        heatmap_size: m, the heatmap side.
    Returns:
        (targets int32 `[..., P]`: row-major cell index `y * m + x` in
        [0, m * m), 0 where not valid; valid bool `[..., P]`: labelled and
        inside the RoI).
    """
    size = int(heatmap_size)
    keypoints = tf.cast(keypoints, tf.float32)
    rois = tf.cast(rois, tf.float32)
    x1, y1, x2, y2 = (rois[..., i:i + 1] for i in range(4))
    x, y = keypoints[..., 0], keypoints[..., 1]
    # Same float32 operations, in the same order, as torchvision.
    scale_x = float(size) / (x2 - x1)
    scale_y = float(size) / (y2 - y1)
    column = tf.floor((x - x1) * scale_x)
    row = tf.floor((y - y1) * scale_y)
    # A keypoint on the right / bottom edge of the RoI belongs to the last cell.
    column = tf.where(tf.equal(x, x2), float(size - 1), column)
    row = tf.where(tf.equal(y, y2), float(size - 1), row)
    inside = (column >= 0.0) & (row >= 0.0) & (column < size) & (row < size)
    valid = inside & (keypoints[..., 2] > 0.0)
    # Cast after masking: no NaN / inf (degenerate RoIs) reaches the int cast.
    targets = tf.cast(tf.where(valid, row * size + column, 0.0), tf.int32)
    return targets, valid


def keypoint_loss(heatmap_logits, targets, valid):
    """Softmax cross-entropy over the m * m cells, mean over valid keypoints (torchvision's keypointrcnn_loss).

    Args:
        heatmap_logits: float `[..., m, m, P]`, one channel per keypoint.
        targets: int32 `[..., P]` cell indices (`keypoints_to_heatmap_targets`).
        valid: bool `[..., P]`: keypoints that count; fold the positive-RoI
            mask into it (`valid & positive[..., None]`).
    Returns:
        float32 scalar; 0 (not NaN) when no keypoint is valid.
    """
    logits = tf.cast(heatmap_logits, tf.float32)
    height, width, num_keypoints = logits.shape[-3], logits.shape[-2], logits.shape[-1]
    if height is not None and width is not None and height != width:
        raise ValueError(f"keypoint heatmaps must be square, got {height} x {width}")
    if height is None:
        height = tf.shape(logits)[-3]
        width = tf.shape(logits)[-2]
    if num_keypoints is None:
        num_keypoints = tf.shape(logits)[-1]
    logits = tf.reshape(logits, [-1, height * width, num_keypoints])
    logits = tf.transpose(logits, [0, 2, 1])  # [N, P, m * m], cell index y * m + x
    logits = tf.reshape(logits, [-1, height * width])
    valid = tf.reshape(tf.cast(valid, tf.bool), [-1])
    labels = tf.where(valid, tf.reshape(tf.cast(targets, tf.int32), [-1]), 0)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    count = tf.maximum(tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)
    return tf.reduce_sum(tf.where(valid, loss, 0.0)) / count


def cubic_resize_matrix(input_size, output_size):
    """`[output_size, input_size]` matrix of torch's bicubic resize along one axis.

    `F.interpolate(mode="bicubic", align_corners=False)` with a target size:
    source coordinate `(dst + 0.5) * in / out - 0.5` (not clamped at 0 for
    cubic), Keys kernel a = -0.75 on the 4 taps floor(src) - 1 .. floor(src)
    + 2, tap indices clamped to the border. Resizing a map is
    `matrix_y @ map @ matrix_x^T`.

    Args:
        input_size: python int.
        output_size: int or int32 scalar tensor.
    """
    scale = tf.cast(input_size, tf.float32) / tf.cast(output_size, tf.float32)
    source = scale * (tf.range(output_size, dtype=tf.float32) + 0.5) - 0.5
    start = tf.floor(source)
    t = source - start
    start = tf.cast(start, tf.int32)
    a = _CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a

    weights = (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))
    matrix = 0.0
    for offset, weight in zip(range(-1, 3), weights, strict=True):
        tap = tf.clip_by_value(start + offset, 0, input_size - 1)
        matrix += tf.one_hot(tap, input_size, dtype=tf.float32) * weight[:, None]
    return matrix


def heatmaps_to_keypoints(heatmaps, rois):
    """Keypoint locations and scores from heatmaps (torchvision's heatmaps_to_keypoints).

    Per RoI: width / height clamped to >= 1 px; each keypoint's heatmap is
    resized with torch's bicubic (`cubic_resize_matrix`) to
    (ceil(height), ceil(width)); its argmax cell (first in row-major order on
    ties) gives x = x1 + (col + 0.5) * width / ceil(width), likewise y; the
    score is the resized heatmap logit at that cell.

    The resized map's size depends on the RoI, so this runs a `tf.map_fn`
    over the RoIs (graph mode and SavedModel export work; XLA does not).

    Args:
        heatmaps: float `[..., m, m, P]` logits.
        rois: float32 `[..., 4]` `[x1, y1, x2, y2]` input pixels (the boxes
            the heatmaps were pooled from).
    Returns:
        float32 `[..., P, 3]`: (x, y, score) in input pixels. torchvision
        returns the score separately (`keypoints_scores`) and puts a constant
        1 (visibility) in the third column; here the third column is the score.
    """
    heatmaps = tf.cast(heatmaps, tf.float32)
    rois = tf.cast(rois, tf.float32)
    size = heatmaps.shape[-3]
    if size is None or heatmaps.shape[-2] != size:
        raise ValueError(f"heatmaps must be [..., m, m, P] with static square m, got {heatmaps.shape}")
    num_keypoints = heatmaps.shape[-1]
    leading = tf.shape(rois)[:-1]
    flat_maps = tf.reshape(heatmaps, [-1, size, size, num_keypoints])
    flat_rois = tf.reshape(rois, [-1, 4])

    def decode(args):
        maps, roi = args
        width = tf.maximum(roi[2] - roi[0], 1.0)
        height = tf.maximum(roi[3] - roi[1], 1.0)
        map_width = tf.cast(tf.math.ceil(width), tf.int32)
        map_height = tf.cast(tf.math.ceil(height), tf.int32)
        rows = cubic_resize_matrix(size, map_height)  # [h, m]
        cols = cubic_resize_matrix(size, map_width)  # [w, m]
        maps = tf.transpose(maps, [2, 0, 1])  # [P, m, m]
        resized = tf.matmul(tf.matmul(rows[None], maps), cols[None], transpose_b=True)  # [P, h, w]
        flat = tf.reshape(resized, [tf.shape(resized)[0], -1])
        # First maximum in row-major order, as torch.argmax (tf.argmax leaves ties unspecified).
        score = tf.reduce_max(flat, axis=1)
        cells = tf.range(tf.shape(flat)[1])[None, :]
        position = tf.reduce_min(tf.where(tf.equal(flat, score[:, None]), cells, tf.shape(flat)[1]), axis=1)
        col = tf.cast(position % map_width, tf.float32)
        row = tf.cast(position // map_width, tf.float32)
        x = (col + 0.5) * (width / tf.cast(map_width, tf.float32)) + roi[0]
        y = (row + 0.5) * (height / tf.cast(map_height, tf.float32)) + roi[1]
        return tf.stack([x, y, score], axis=-1)

    keypoints = tf.map_fn(
        decode, (flat_maps, flat_rois),
        fn_output_signature=tf.TensorSpec([num_keypoints, 3], tf.float32))
    return tf.reshape(keypoints, tf.concat([leading, [num_keypoints, 3]], axis=0))
