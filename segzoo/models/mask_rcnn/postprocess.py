"""Inference post-processing: detections from the box head, masks pasted into the image.

`detect` follows torchvision's `RoIHeads.postprocess_detections` with static
shapes: class-specific boxes decoded (weights (10, 10, 5, 5)) and clipped,
background dropped, candidates with score <= `score_threshold` (0.05) or a
side < `min_size` invalid, the `num_candidates` best kept, per-class NMS at
`nms_threshold` (0.5), `detections_per_image` (100) slots by decreasing score.

`paste_masks` is torchvision's `paste_masks_in_image(padding=1)` written as two
small matrix products per detection: the M x M mask is zero-padded to M + 2,
its box scaled by (M + 2) / M about the centre and truncated to integers
(x0, y0, x1, y1); the mask is bilinearly resized (half-pixel centres, like
`F.interpolate(align_corners=False)`) to (y1 - y0 + 1, x1 - x0 + 1) and
placed at (x0, y0), cut at the image border. Bilinear resizing is separable,
so `resized = Ry @ mask @ Rx^T` with interpolation matrices Ry `[H, M + 2]`
and Rx `[W, M + 2]` that are zero outside the box: the same numbers as the
per-box loop, with static shapes.
"""

from __future__ import annotations

import tensorflow as tf

from segzoo.models.mask_rcnn import box_ops


def detect(class_logits, box_deltas, proposals, proposal_valid, image_size, box_coder, *,
           score_threshold=0.05, nms_threshold=0.5, detections_per_image=100, min_size=1e-2,
           num_candidates=4096):
    """Final detections of the box head.

    Args:
        class_logits: float32 `[B, R, K + 1]`.
        box_deltas: float32 `[B, R, K + 1, 4]`.
        proposals: float32 `[B, R, 4]` xyxy pixels; proposal_valid: bool `[B, R]`.
        image_size: (height, width) boxes are clipped to.
        box_coder: the box head's `BoxCoder`.
        num_candidates: candidates (box, class pairs) that enter the NMS, the
            best by score: a static cap on torchvision's "every pair above the
            score threshold".
    Returns:
        dict "boxes" float32 `[B, D, 4]`, "scores" float32 `[B, D]`, "classes"
        int32 `[B, D]` (1..K), "valid" bool `[B, D]`; invalid slots are zeros.
    """
    scores = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[:, :, 1:]
    num_classes = tf.shape(scores)[2]
    boxes = box_coder.decode(box_deltas[:, :, 1:], proposals[:, :, None, :])
    boxes = box_ops.clip_boxes(boxes, image_size[0], image_size[1])
    classes = tf.broadcast_to(tf.range(1, num_classes + 1)[None, None, :], tf.shape(scores))
    valid = tf.logical_and(scores > score_threshold, proposal_valid[:, :, None])
    valid = tf.logical_and(valid, box_ops.nonempty(boxes, min_size))
    batch = tf.shape(scores)[0]
    scores = tf.reshape(scores, [batch, -1])
    boxes = tf.reshape(boxes, [batch, -1, 4])
    classes = tf.reshape(classes, [batch, -1])
    valid = tf.reshape(valid, [batch, -1])
    total = scores.shape[1]
    k = min(num_candidates, total) if total is not None else tf.minimum(num_candidates, tf.shape(scores)[1])
    _, top = tf.math.top_k(tf.where(valid, scores, -1.0), k=k)
    scores, boxes = box_ops.gather_rows(scores, top), box_ops.gather_rows(boxes, top)
    classes, valid = box_ops.gather_rows(classes, top), box_ops.gather_rows(valid, top)
    keep, keep_valid = box_ops.nms_padded(boxes, scores, valid, nms_threshold, detections_per_image,
                                          groups=classes)
    return {
        "boxes": tf.where(keep_valid[..., None], box_ops.gather_rows(boxes, keep), 0.0),
        "scores": tf.where(keep_valid, box_ops.gather_rows(scores, keep), 0.0),
        "classes": tf.where(keep_valid, box_ops.gather_rows(classes, keep), 0),
        "valid": keep_valid,
    }


def _paste_matrix(start, end, mask_size, size):
    """Interpolation matrix `[N, size, mask_size]` from integer box edges (see module doc)."""
    length = tf.maximum(end - start + 1, 1)
    pixels = tf.range(size)[None, :]
    inside = tf.logical_and(pixels >= tf.maximum(start, 0)[:, None],
                            pixels < tf.minimum(end + 1, size)[:, None])
    offset = tf.cast(pixels - start[:, None], tf.float32)
    scale = tf.cast(mask_size, tf.float32) / tf.cast(length, tf.float32)[:, None]
    source = tf.maximum((offset + 0.5) * scale - 0.5, 0.0)
    low = tf.cast(tf.floor(source), tf.int32)
    low = tf.minimum(low, mask_size - 1)
    high = tf.minimum(low + 1, mask_size - 1)
    frac = source - tf.cast(low, tf.float32)
    frac = tf.where(low >= mask_size - 1, 0.0, frac)
    # tf.expand_dims, not [..., None]: TFLite's builtin STRIDED_SLICE has no new_axis_mask.
    matrix = (tf.one_hot(low, mask_size) * tf.expand_dims(1.0 - frac, -1)
              + tf.one_hot(high, mask_size) * tf.expand_dims(frac, -1))
    return matrix * tf.expand_dims(tf.cast(inside, tf.float32), -1)


def paste_masks(masks, boxes, height, width, padding=1):
    """Pastes per-box mask probabilities into the image (torchvision paste_masks_in_image).

    Args:
        masks: float32 `[B, D, M, M]` probabilities in box coordinates.
        boxes: float32 `[B, D, 4]` xyxy pixels of the image they are pasted into.
        height, width: image size (ints or scalar tensors).
        padding: zero border added around the mask before resizing.
    Returns:
        float32 `[B, D, height, width]` probabilities (0 outside the box).
    """
    masks = tf.cast(masks, tf.float32)
    batch, count = tf.shape(masks)[0], tf.shape(masks)[1]
    size = masks.shape[-1]
    padded_size = size + 2 * padding
    masks = tf.pad(masks, [[0, 0], [0, 0], [padding, padding], [padding, padding]])
    scale = padded_size / size
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    centre_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    centre_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    # float -> int truncates toward zero, like torch's .to(torch.int64).
    x0 = tf.cast(centre_x - half_w, tf.int32)
    x1 = tf.cast(centre_x + half_w, tf.int32)
    y0 = tf.cast(centre_y - half_h, tf.int32)
    y1 = tf.cast(centre_y + half_h, tf.int32)
    rows = _paste_matrix(y0, y1, padded_size, height)
    cols = _paste_matrix(x0, x1, padded_size, width)
    flat = tf.reshape(masks, [-1, padded_size, padded_size])
    pasted = tf.matmul(tf.matmul(rows, flat), cols, transpose_b=True)
    return tf.reshape(pasted, [batch, count, height, width])
