"""Box arithmetic and static-shape non-maximum suppression for Mask R-CNN.

Boxes are `[x1, y1, x2, y2]` float32 in pixels (torchvision convention: a box
covering pixels 0..9 is `[0, 0, 10, 10]`, width = x2 - x1, no "+1").

NMS here never changes a tensor's shape: candidates come padded to a fixed
count with a validity mask, and the result is a fixed number of indices with a
validity mask. An image with no valid candidate gives an all-invalid result
instead of the zero-size tensors that crash XLA. No `combined_non_max_suppression`
(no XLA kernel): per-class NMS shifts each class's boxes by a class-dependent
offset so boxes of different classes never overlap (torchvision's
`batched_nms` coordinate trick) and runs one class-blind NMS.
"""

from __future__ import annotations

import tensorflow as tf


def box_area(boxes):
    """Areas `[...]` of boxes `[..., 4]` xyxy (negative sizes give 0)."""
    width = tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def pairwise_iou(boxes1, boxes2):
    """Intersection over union of every pair.

    Args:
        boxes1: float32 `[..., N, 4]` xyxy.
        boxes2: float32 `[..., M, 4]` xyxy, same leading dimensions.
    Returns:
        float32 `[..., N, M]`; 0 where the union is empty (degenerate boxes).
    """
    area1 = box_area(boxes1)[..., :, None]
    area2 = box_area(boxes2)[..., None, :]
    top_left = tf.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = tf.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    size = tf.maximum(bottom_right - top_left, 0.0)
    intersection = size[..., 0] * size[..., 1]
    union = area1 + area2 - intersection
    return tf.math.divide_no_nan(intersection, union)


def clip_boxes(boxes, height, width):
    """Clips xyxy boxes `[..., 4]` to the image `[0, width] x [0, height]`.

    `height`/`width` are Python or tensor scalars (pixels), or tensors
    broadcastable to `boxes[..., 0]`.
    """
    height = tf.cast(height, boxes.dtype)
    width = tf.cast(width, boxes.dtype)
    x1 = tf.clip_by_value(boxes[..., 0], 0.0, width)
    y1 = tf.clip_by_value(boxes[..., 1], 0.0, height)
    x2 = tf.clip_by_value(boxes[..., 2], 0.0, width)
    y2 = tf.clip_by_value(boxes[..., 3], 0.0, height)
    return tf.stack([x1, y1, x2, y2], axis=-1)


def nonempty(boxes, min_size):
    """bool `[...]`: both sides of the box are at least `min_size` pixels."""
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return tf.logical_and(width >= min_size, height >= min_size)


def nms_padded(boxes, scores, valid, iou_threshold, max_output_size, groups=None):
    """Greedy NMS on padded candidates, batched, with a fixed output size.

    A candidate is suppressed by a higher-scoring kept candidate of the same
    group whose IoU with it is above `iou_threshold` (torchvision.ops.nms).

    Args:
        boxes: float32 `[B, N, 4]` xyxy pixels.
        scores: float32 `[B, N]`.
        valid: bool `[B, N]`; invalid candidates are never kept.
        iou_threshold: Python float.
        max_output_size: Python int K, the number of output slots.
        groups: optional int32 `[B, N]` group (class or level) ids: candidates
            of different groups never suppress each other.
    Returns:
        `(indices, keep_valid)`: int32 `[B, K]` indices into N, by decreasing
        score, and bool `[B, K]` marking the slots that hold a kept candidate
        (invalid slots hold index 0). K slots even when N < K.
    """
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    num_candidates = tf.shape(boxes)[1]
    if groups is not None:
        # Shift each group far away from every other group: boxes of
        # different groups then have IoU 0 (torchvision batched_nms). tf.expand_dims,
        # not [..., None]: TFLite's builtin STRIDED_SLICE has no new_axis_mask.
        coordinates = tf.where(tf.expand_dims(valid, -1), boxes, tf.zeros_like(boxes))
        max_coordinate = tf.reduce_max(tf.abs(coordinates), axis=[1, 2], keepdims=True)
        offsets = tf.expand_dims(tf.cast(groups, tf.float32), -1) * (2.0 * max_coordinate + 1.0)
        boxes = boxes + offsets
    # Invalid candidates get a score below every valid one and are not
    # selectable: non_max_suppression_padded drops scores <= score_threshold.
    lowest = tf.constant(-1e9, tf.float32)
    safe_scores = tf.where(valid, tf.maximum(scores, -1e8), lowest)
    # Degenerate boxes confuse the tiled algorithm's "box cleared to a dot"
    # bookkeeping only for suppression, never for selection; invalid ones are
    # moved to a unit box far outside so they suppress nothing.
    far = tf.constant([-1e7, -1e7, -1e7 + 1.0, -1e7 + 1.0], tf.float32)
    safe_boxes = tf.where(tf.expand_dims(valid, -1), boxes, far)
    # Pad to at least K candidates so every output slot exists.
    # The padded rows are the same far unit box; real boxes keep their size
    # (a sub-pixel-thin proposal at the image border must not be widened to
    # 1 px: that changes its IoUs and so torchvision's NMS result).
    pad = tf.maximum(max_output_size - num_candidates, 0)
    pad_rows = tf.tile(far[None, None, :], tf.stack([tf.shape(safe_boxes)[0], pad, 1]))
    safe_boxes = tf.concat([safe_boxes, pad_rows], axis=1)
    safe_scores = tf.pad(safe_scores, [[0, 0], [0, pad]], constant_values=-1e9)
    # non_max_suppression_padded takes [y1, x1, y2, x2]; IoU is symmetric in
    # swapping the axes, so xyxy works unchanged.
    indices, num_valid = tf.image.non_max_suppression_padded(
        safe_boxes,
        safe_scores,
        max_output_size,
        iou_threshold=iou_threshold,
        score_threshold=-1e8,
        pad_to_max_output_size=True,
        canonicalized_coordinates=True,
    )
    indices = tf.cast(indices[:, :max_output_size], tf.int32)
    slots = tf.range(max_output_size)[None, :]
    keep_valid = slots < tf.cast(num_valid, tf.int32)[:, None]
    indices = tf.where(keep_valid, indices, tf.zeros_like(indices))
    indices = tf.minimum(indices, tf.maximum(num_candidates - 1, 0))
    return indices, keep_valid


def gather_rows(values, indices):
    """Per-image gather: `values` `[B, N, ...]`, `indices` int32 `[B, K]` -> `[B, K, ...]`."""
    return tf.gather(values, indices, batch_dims=1)
