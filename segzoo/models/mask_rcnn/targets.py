"""Training targets: RPN anchor labels and RoI head (box, class, mask) targets.

Everything works on padded batches with validity masks (static shapes):
ground truth comes as `boxes [B, M, 4]`, `classes [B, M]` (0 = padding row),
`masks uint8 [B, M, H, W]`; an image whose rows are all padding is a negative
(all anchors and all sampled RoIs background, no mask targets).

- `rpn_targets`: anchors matched at IoU 0.7 / 0.3 with low-quality matches,
  256 anchors sampled per image, 50% positive; regression targets with
  weights (1, 1, 1, 1).
- `roi_targets`: ground-truth boxes appended to the proposals, matched at
  IoU 0.5 (>= 0.5 foreground, < 0.5 background), 512 RoIs sampled per image,
  25% positive; class labels (0 = background) and regression targets with
  weights (10, 10, 5, 5) for the GT class.
- `mask_targets`: each positive RoI's GT mask RoIAligned to 28 x 28 inside the
  RoI (`roi_align_masks`, an XLA-safe gather on the uint8 masks).
"""

from __future__ import annotations

import tensorflow as tf

from segzoo.models.mask_rcnn import box_ops


def rpn_targets(anchors, gt_boxes, gt_valid, matcher, sampler, box_coder, seed=None):
    """Sampled anchors with labels and regression targets.

    Args:
        anchors: float32 `[N, 4]` xyxy pixels (all levels concatenated).
        gt_boxes: float32 `[B, M, 4]`; gt_valid: bool `[B, M]`.
        matcher: `Matcher(0.7, 0.3, allow_low_quality_matches=True)`.
        sampler: `BalancedPositiveNegativeSampler(256, 0.5)`.
        box_coder: RPN `BoxCoder((1, 1, 1, 1))`.
    Returns:
        dict: "indices" int32 `[B, S]` anchor indices, "valid" bool `[B, S]`,
        "labels" float32 `[B, S]` (1 object, 0 background),
        "regression" float32 `[B, S, 4]` (zero where not positive).
    """
    batch = tf.shape(gt_boxes)[0]
    anchors_b = tf.broadcast_to(anchors[None], [batch, tf.shape(anchors)[0], 4])
    iou = box_ops.pairwise_iou(gt_boxes, anchors_b)
    matched, labels = matcher(iou, gt_valid)
    indices, valid, positive = sampler(labels, seed=seed)
    sampled_anchors = tf.gather(anchors, indices)
    gt = tf.gather(box_ops.gather_rows(gt_boxes, matched), indices, batch_dims=1)
    regression = box_coder.encode(_safe_boxes(gt, positive), _safe_boxes(sampled_anchors, positive))
    regression = tf.where(positive[..., None], regression, 0.0)
    return {
        "indices": indices,
        "valid": valid,
        "labels": tf.cast(positive, tf.float32),
        "regression": tf.stop_gradient(regression),
    }


def roi_targets(proposals, proposal_valid, gt_boxes, gt_classes, matcher, sampler, box_coder, seed=None):
    """Samples RoIs from proposals + GT boxes and assigns their targets.

    Args:
        proposals: float32 `[B, P, 4]`; proposal_valid: bool `[B, P]`.
        gt_boxes: float32 `[B, M, 4]`; gt_classes: int32 `[B, M]` (0 = padding).
        matcher: `Matcher(0.5, 0.5)`; sampler: `BalancedPositiveNegativeSampler(512, 0.25)`.
        box_coder: box head `BoxCoder((10, 10, 5, 5))`.
    Returns:
        dict with R = sampler.batch_size_per_image slots, positives first
        (all within the first `sampler.num_positive_slots`):
        "rois" float32 `[B, R, 4]`, "valid" bool `[B, R]`, "positive" bool
        `[B, R]`, "labels" int32 `[B, R]` (GT class, 0 = background or invalid),
        "matched" int32 `[B, R]` GT row of each RoI, "regression" float32
        `[B, R, 4]` (zero where not positive).
    """
    gt_classes = tf.cast(gt_classes, tf.int32)
    gt_valid = gt_classes > 0
    candidates = tf.concat([tf.cast(proposals, tf.float32), tf.cast(gt_boxes, tf.float32)], axis=1)
    candidate_valid = tf.concat([proposal_valid, gt_valid], axis=1)
    iou = box_ops.pairwise_iou(gt_boxes, candidates)
    matched, labels = matcher(iou, gt_valid)
    labels = tf.where(candidate_valid, labels, -1)
    indices, valid, positive = sampler(labels, seed=seed)
    rois = box_ops.gather_rows(candidates, indices)
    matched = box_ops.gather_rows(matched, indices)
    matched_boxes = box_ops.gather_rows(gt_boxes, matched)
    classes = tf.where(positive, box_ops.gather_rows(gt_classes, matched), 0)
    regression = box_coder.encode(_safe_boxes(matched_boxes, positive), _safe_boxes(rois, positive))
    regression = tf.where(positive[..., None], regression, 0.0)
    return {
        "rois": tf.stop_gradient(rois),
        "valid": valid,
        "positive": positive,
        "labels": classes,
        "matched": tf.where(positive, matched, 0),
        "regression": tf.stop_gradient(regression),
    }


def _safe_boxes(boxes, keep):
    """Boxes where `keep`, a unit box elsewhere (no division by zero in encode)."""
    unit = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32)
    return tf.where(keep[..., None], tf.cast(boxes, tf.float32), unit)


def _axis_samples(start, end, size, output_size, sampling_ratio):
    """Bilinear taps along one axis for RoIAlign (aligned=True) sample points.

    Returns (low, high) int32 `[R, output_size * s]`, (w_low, w_high) float32
    with the out-of-range rule folded in (samples < -1 or > size weigh 0).
    """
    size_f = tf.cast(size, tf.float32)
    start = start - 0.5
    length = (end - 0.5) - start
    bin_size = length / output_size
    steps = (tf.range(output_size * sampling_ratio, dtype=tf.float32) + 0.5) / sampling_ratio
    coords = start[:, None] + steps[None, :] * bin_size[:, None]
    inside = tf.cast(tf.logical_and(coords >= -1.0, coords <= size_f), tf.float32)
    coords = tf.maximum(coords, 0.0)
    low = tf.floor(coords)
    at_end = low >= size_f - 1.0
    low = tf.where(at_end, size_f - 1.0, low)
    coords = tf.where(at_end, low, coords)
    high = tf.where(at_end, low, low + 1.0)
    frac = coords - low
    return (tf.cast(low, tf.int32), tf.cast(high, tf.int32), (1.0 - frac) * inside, frac * inside)


def roi_align_masks(masks, boxes, mask_index, output_size=28, sampling_ratio=2):
    """RoIAlign (aligned=True, fixed sampling ratio) of single-channel uint8 masks.

    Exactly `roi_align(masks[..., None], boxes, mask_index, output_size,
    spatial_scale=1, sampling_ratio, aligned=True)` for a [M', H, W, 1] map,
    computed by gathering the uint8 pixels each sample needs, so no float copy
    of the full-resolution masks is made and no crop_and_resize is used.

    Args:
        masks: uint8 `[B, M, H, W]` (0/1).
        boxes: float32 `[B, R, 4]` xyxy pixels of the RoIs.
        mask_index: int32 `[B, R]` row of `masks[b]` each RoI reads.
        output_size: S.
        sampling_ratio: samples per bin and axis (> 0).
    Returns:
        float32 `[B, R, S, S]` in [0, 1] (soft targets, as torchvision's).
    """
    shape = tf.shape(masks)
    batch, num_masks, height, width = shape[0], shape[1], shape[2], shape[3]
    num_rois = tf.shape(boxes)[1]
    flat_boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    y_low, y_high, wy_low, wy_high = _axis_samples(
        flat_boxes[:, 1], flat_boxes[:, 3], height, output_size, sampling_ratio)
    x_low, x_high, wx_low, wx_high = _axis_samples(
        flat_boxes[:, 0], flat_boxes[:, 2], width, output_size, sampling_ratio)
    image = tf.repeat(tf.range(batch), num_rois)
    plane = tf.cast(image * num_masks + tf.reshape(mask_index, [-1]), tf.int64)
    plane = plane * tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    flat_masks = tf.reshape(masks, [-1])

    def tap(rows, cols):
        linear = (plane[:, None, None] + tf.cast(rows, tf.int64)[:, :, None] * tf.cast(width, tf.int64)
                  + tf.cast(cols, tf.int64)[:, None, :])
        return tf.cast(tf.gather(flat_masks, linear), tf.float32)

    value = (wy_low[:, :, None] * wx_low[:, None, :] * tap(y_low, x_low)
             + wy_low[:, :, None] * wx_high[:, None, :] * tap(y_low, x_high)
             + wy_high[:, :, None] * wx_low[:, None, :] * tap(y_high, x_low)
             + wy_high[:, :, None] * wx_high[:, None, :] * tap(y_high, x_high))
    s = sampling_ratio
    value = tf.reshape(value, [-1, output_size, s, output_size, s])
    value = tf.reduce_mean(value, axis=[2, 4])
    return tf.reshape(value, [batch, num_rois, output_size, output_size])


def _crop_weights(start, end, crop_start, crop_end, crop_size, output_size, sampling_ratio):
    """Dense bilinear weights `[R, output_size * s, crop_size]` of RoI samples on a crop axis.

    The RoI's samples (RoIAlign aligned=True: image coordinate
    `start + (k + 0.5) * (end - start) / (output_size * s)`) are mapped into the
    crop's pixel-index frame `v = (x - crop_start) * crop_size / (crop_end - crop_start) - 0.5`
    and weighted by the hat function `max(0, 1 - |v - k|)` of each crop pixel k:
    bilinear interpolation with zeros outside the crop (the mask is empty outside its box).
    """
    count = output_size * sampling_ratio
    steps = (tf.range(count, dtype=tf.float32) + 0.5) / count
    coords = start[:, None] + steps[None, :] * (end - start)[:, None]
    extent = tf.maximum(crop_end - crop_start, 1e-3)
    local = (coords - crop_start[:, None]) * (crop_size / extent)[:, None] - 0.5
    pixels = tf.range(crop_size, dtype=tf.float32)
    return tf.maximum(1.0 - tf.abs(local[:, :, None] - pixels[None, None, :]), 0.0)


def roi_align_mask_crops(crops, crop_boxes, boxes, mask_index, output_size=28, sampling_ratio=2):
    """Mask targets of RoIs from box-resolution GT masks (`mask_crops`, issue #11).

    `crops[b, m]` is GT mask m of image b sampled on a C x C grid over its box
    `crop_boxes[b, m]` (pixel (i, j) of the crop = the mask at the image point
    `x1 + (j + 0.5) * w / C`, `y1 + (i + 0.5) * h / C`; `instance_train_pipeline(...,
    mask_crop_size=C)`), so memory grows with instances x C^2, not with instances x
    image area. Each RoI's RoIAlign samples (aligned=True, `sampling_ratio` per bin
    and axis, as `roi_align_masks`) are mapped into its GT's crop and read
    bilinearly (zero outside the crop); the bin average follows. Equals
    `roi_align_masks` on the full-image masks up to the crop's resampling: on
    the tests' masks (boxes of 10-100 px, C = 56) the mean absolute difference
    is below 0.02 and the thresholded (>= 0.5) targets agree on >= 97% of cells.

    Args:
        crops: float `[B, M, C, C]` in [0, 1] (uint8 0/1 works too).
        crop_boxes: float32 `[B, M, 4]` xyxy pixels, the box each crop covers (the GT boxes).
        boxes: float32 `[B, R, 4]` xyxy pixels of the RoIs.
        mask_index: int32 `[B, R]` GT row of each RoI.
        output_size: S; sampling_ratio: samples per bin and axis.
    Returns:
        float32 `[B, R, S, S]` in [0, 1].
    """
    crops = tf.cast(crops, tf.float32)
    batch, num_rois = tf.shape(boxes)[0], tf.shape(boxes)[1]
    size = crops.shape[-1]
    flat_boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    gt = tf.reshape(box_ops.gather_rows(tf.cast(crop_boxes, tf.float32), mask_index), [-1, 4])
    picked = tf.reshape(box_ops.gather_rows(crops, mask_index), [-1, size, size])
    wy = _crop_weights(flat_boxes[:, 1], flat_boxes[:, 3], gt[:, 1], gt[:, 3], size, output_size,
                       sampling_ratio)
    wx = _crop_weights(flat_boxes[:, 0], flat_boxes[:, 2], gt[:, 0], gt[:, 2], size, output_size,
                       sampling_ratio)
    value = tf.matmul(tf.matmul(wy, picked), wx, transpose_b=True)  # [R', S*s, S*s]
    s = sampling_ratio
    value = tf.reduce_mean(tf.reshape(value, [-1, output_size, s, output_size, s]), axis=[2, 4])
    return tf.reshape(value, [batch, num_rois, output_size, output_size])
