"""Training and evaluation input pipelines (tf.data, parallel map, prefetch).

Inputs are the unbatched datasets of `segzoo.data.load`. All random choices use
stateless ops seeded per element from `tf.data.Dataset.random(seed)`, so a
given `seed` reproduces the same batches (order and augmentation) run after
run, and each epoch draws new augmentations; `seed=None` is random.

Semantic training (`semantic_train_pipeline`), per image:
  1. random scale s ~ U(scale_range) and random crop of crop_size x crop_size:
     the crop window is chosen in the scaled image, and only the source
     pixels under it are resized (image bilinear, mask nearest neighbour), so
     the cost follows the crop size, not s^2 times the image (the window's
     scale is s up to rounding to whole pixels); where the scaled image is
     smaller than the crop it is padded bottom/right with the ImageNet mean
     RGB (123.68, 116.78, 103.94) — zero after the models' own normalisation —
     and the mask with 255 (ignore);
  2. photometric jitter of the window only: brightness +-32, contrast and
     saturation x[0.8, 1.2], hue +-0.05 turn (`color_jitter_affine`);
  3. horizontal flip with probability 0.5 (image and mask together).
Outputs float32 images [B, S, S, 3] in [0, 255] and int32 masks [B, S, S].
"""

from __future__ import annotations

import math

import tensorflow as tf

from segzoo.arguments import size_pair
from segzoo.conventions import IGNORE_LABEL, IMAGENET_MEAN_RGB
from segzoo.errors import ArgumentError, arg

AUTOTUNE = tf.data.AUTOTUNE


def to_channels(images, channels):
    """float RGB images [..., 3] as [..., channels]: 3 as they are, 1 as
    `tf.image.rgb_to_grayscale` (0.2989 R + 0.587 G + 0.114 B: the grey of the models'
    `serving_call`, so training sees what inference sees)."""
    if channels == 3:
        return images
    if channels != 1:
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    return tf.image.rgb_to_grayscale(images)


def _with_seeds(ds, seed):
    """Zip every element with a stateless seed int64 [2] (see module doc)."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds))


def _split_seed(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.596, -0.274, -0.322),
    (0.211, -0.523, 0.312),
)


def color_jitter_affine(brightness, contrast, saturation, hue, channel_mean):
    """The affine map x -> A x + b of one photometric jitter (x: RGB in [0, 255]).

    Composes, in order: brightness (add `brightness`), contrast (per channel,
    (x - mean) * contrast + mean, as `tf.image.adjust_contrast`), saturation
    (blend with the luma grey, factor `saturation`, as torchvision) and hue (a
    rotation by `hue` turns (2 pi hue radians) of the chroma plane of YIQ).
    One fused map instead of four image ops keeps the jitter cheap.

    Args:
        brightness, contrast, saturation, hue: float32 scalars.
        channel_mean: float32 [3], per-channel mean of the image.

    Returns:
        (A float32 [3, 3], b float32 [3]).
    """
    luma = tf.constant(_LUMA, tf.float32)
    to_yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    eye = tf.eye(3)
    sat = saturation * eye + (1.0 - saturation) * tf.ones([3, 1]) * luma[None, :]
    angle = 2.0 * math.pi * hue
    cos, sin = tf.cos(angle), tf.sin(angle)
    zero, one = tf.zeros([]), tf.ones([])
    rotation = tf.stack(
        [tf.stack([one, zero, zero]), tf.stack([zero, cos, -sin]), tf.stack([zero, sin, cos])]
    )
    hue_matrix = tf.linalg.inv(to_yiq) @ rotation @ to_yiq
    m = hue_matrix @ sat
    a = contrast * m
    b = tf.linalg.matvec(m, (1.0 - contrast) * channel_mean + brightness)
    return a, b


def _photometric(image, seed):
    """Random jitter of float32 RGB [h, w, 3] in [0, 255] (module doc); same range out."""
    factors = tf.random.stateless_uniform([4], seed, -1.0, 1.0)
    a, b = color_jitter_affine(
        32.0 * factors[0],
        1.0 + 0.2 * factors[1],
        1.0 + 0.2 * factors[2],
        0.05 * factors[3],
        tf.reduce_mean(image, axis=[0, 1]),
    )
    return tf.clip_by_value(tf.linalg.matmul(image, a, transpose_b=True) + b, 0.0, 255.0)


def semantic_train_pipeline(
    ds,
    crop_size,
    batch_size,
    *,
    scale_range=(0.5, 2.0),
    flip=True,
    photometric=True,
    seed=None,
    shuffle_buffer=1024,
    drop_remainder=False,
    pad_value=IMAGENET_MEAN_RGB,
):
    """Augment, crop and batch a semantic dataset for training (module doc).

    Args:
        ds: unbatched dataset of {"image": uint8 [H, W, 3], "mask": uint8 [H, W], ...}.
        crop_size: S (int) or (height, width) of the crops.
        batch_size: B.
        scale_range: (low, high) of the random scale; (1, 1) disables it.
        flip: random horizontal flips.
        photometric: brightness/contrast/saturation/hue jitter.
        seed: int for reproducible shuffling and augmentation, None for random.
        shuffle_buffer: elements in the shuffle buffer (0 disables shuffling).
        drop_remainder: drop the last partial batch (static batch dimension).
        pad_value: RGB value of image padding (0..255).

    Returns:
        dataset of (images float32 [B, S, S, 3] in [0, 255], masks int32 [B, S, S]).
    """
    crop_h, crop_w = size_pair(crop_size, "crop_size")
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range!r}")
    pad = tf.constant(pad_value, tf.float32)

    def augment(element, seed2):
        image, mask = element["image"], element["mask"]
        s_scale, s_y, s_x, s_flip, s_photo = _split_seed(seed2, 5)
        height, width = tf.shape(image)[0], tf.shape(image)[1]
        if low != 1.0 or high != 1.0:
            # Scale only the source window that lands in the crop (cost ~ crop size):
            # out = the crop window in the scaled image, src = its extent in the source.
            scale = tf.random.stateless_uniform([], s_scale, low, high)
            scaled_h = tf.maximum(
                1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32)
            )
            scaled_w = tf.maximum(
                1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32)
            )
            win_h, win_w = tf.minimum(scaled_h, crop_h), tf.minimum(scaled_w, crop_w)
            src_h = tf.clip_by_value(
                tf.cast(tf.round(tf.cast(win_h, tf.float32) / scale), tf.int32), 1, height
            )
            src_w = tf.clip_by_value(
                tf.cast(tf.round(tf.cast(win_w, tf.float32) / scale), tf.int32), 1, width
            )
        else:
            win_h, win_w = tf.minimum(height, crop_h), tf.minimum(width, crop_w)
            src_h, src_w = win_h, win_w
        y0 = tf.random.stateless_uniform([], s_y, 0, height - src_h + 1, dtype=tf.int32)
        x0 = tf.random.stateless_uniform([], s_x, 0, width - src_w + 1, dtype=tf.int32)
        image = tf.cast(image[y0 : y0 + src_h, x0 : x0 + src_w], tf.float32)
        mask = mask[y0 : y0 + src_h, x0 : x0 + src_w]
        if low != 1.0 or high != 1.0:
            image = tf.image.resize(image, [win_h, win_w], method="bilinear")
            mask = tf.image.resize(mask[..., None], [win_h, win_w], method="nearest")[..., 0]
        if photometric:
            image = _photometric(image, s_photo)
        paddings = [[0, crop_h - win_h], [0, crop_w - win_w]]
        image = tf.pad(image - pad, paddings + [[0, 0]]) + pad
        mask = tf.pad(tf.cast(mask, tf.int32), paddings, constant_values=IGNORE_LABEL)
        if flip:
            do_flip = tf.random.stateless_uniform([], s_flip) < 0.5
            image = tf.cond(do_flip, lambda: image[:, ::-1], lambda: image)
            mask = tf.cond(do_flip, lambda: mask[:, ::-1], lambda: mask)
        image = tf.ensure_shape(image, [crop_h, crop_w, 3])
        mask = tf.ensure_shape(mask, [crop_h, crop_w])
        return image, mask

    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = _with_seeds(ds, seed)
    ds = ds.map(augment, num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)


def semantic_eval_pipeline(ds, batch_size=1, *, size=None, pad_value=0.0):
    """Batch a semantic dataset for evaluation, without augmentation.

    Args:
        ds: unbatched dataset of {"image": uint8 [H, W, 3], "mask": uint8 [H, W], ...}.
        batch_size: B. With B = 1 and `size=None` images keep their original size;
            with B > 1 images are padded bottom/right to the largest in the batch
            (image with `pad_value`, mask with 255 so padding is ignored).
        size: None, or S / (height, width): resize every image (bilinear) and mask
            (nearest) to that size first.

    Returns:
        dataset of (images float32 [B, H, W, 3] in [0, 255], masks int32 [B, H, W]).
    """
    target = None if size is None else size_pair(size, "size")

    def prepare(element):
        image = tf.cast(element["image"], tf.float32)
        mask = tf.cast(element["mask"], tf.int32)
        if target is not None:
            image = tf.image.resize(image, target, method="bilinear")
            mask = tf.image.resize(mask[..., None], target, method="nearest")[..., 0]
        return image, mask

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE)
    if batch_size == 1 or target is not None:
        ds = ds.batch(batch_size)
    else:
        ds = ds.padded_batch(
            batch_size,
            padding_values=(
                tf.constant(pad_value, tf.float32),
                tf.constant(IGNORE_LABEL, tf.int32),
            ),
        )
    return ds.prefetch(AUTOTUNE)


def instance_pad_size(image_size, max_size=1333):
    """Side P of the square `instance_train_pipeline` pads to by default.

    P = the multiple of 32 >= min(max_size, ceil(image_size * 5 / 3)): 1344
    for COCO's 800/1333 and 224 for image_size 128. Images whose long side
    would exceed P after the short side resize are shrunk to fit.
    """
    longest = min(int(max_size), int(math.ceil(image_size * 5 / 3)))
    return int(math.ceil(longest / 32) * 32)


def _image_sizes(image_size):
    sizes = tuple(image_size) if isinstance(image_size, list | tuple) else (image_size,)
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"image_size must be a positive int or a list of them, got {image_size!r}")
    return sizes


def _boxes_of_masks(masks):
    """xyxy float32 [N, 4] extents of uint8 masks [N, H, W] (pixel edges), and [N] non-empty."""
    rows = tf.reduce_any(masks > 0, axis=2)
    cols = tf.reduce_any(masks > 0, axis=1)
    present = tf.reduce_any(rows, axis=1)

    def extent(flags):
        size = tf.shape(flags)[1]
        first = tf.argmax(tf.cast(flags, tf.int32), axis=1, output_type=tf.int32)
        last = size - tf.argmax(tf.cast(flags[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
        return tf.cast(first, tf.float32), tf.cast(last, tf.float32)

    y1, y2 = extent(rows)
    x1, x2 = extent(cols)
    return tf.stack([x1, y1, x2, y2], axis=1), present


def mask_crops(masks, boxes, size):
    """Box-resolution masks: each mask sampled on a size x size grid over its box.

    Crop pixel (i, j) is the mask bilinearly interpolated at the image point
    `(x1 + (j + 0.5) * w / size, y1 + (i + 0.5) * h / size)` (pixel centres at
    k + 0.5, zero beyond the image), so a RoIAlign over the crop
    (`segzoo.models.mask_rcnn.targets.roi_align_mask_crops`) reads what it would
    read from the full mask.

    Args:
        masks: uint8 [N, H, W] (0/1).
        boxes: float32 [N, 4] xyxy pixels of `masks`' frame.
        size: C.
    Returns:
        float32 [N, C, C] in [0, 1].
    """
    height = tf.cast(tf.shape(masks)[1], tf.float32)
    width = tf.cast(tf.shape(masks)[2], tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    # crop_and_resize samples y1n * (H - 1) + i * (y2n - y1n) * (H - 1) / (C - 1): put the
    # first and last samples on the first and last crop pixel centres (index coordinates).
    def axis(lo, hi, extent):
        span = hi - lo
        scale = tf.maximum(extent - 1.0, 1.0)
        first = lo + (0.5 / size) * span - 0.5
        last = lo + ((size - 0.5) / size) * span - 0.5
        return first / scale, last / scale

    y1, y2 = axis(boxes[:, 1], boxes[:, 3], height)
    x1, x2 = axis(boxes[:, 0], boxes[:, 2], width)
    crops = tf.image.crop_and_resize(
        tf.cast(masks, tf.float32)[..., None], tf.stack([y1, x1, y2, x2], axis=1),
        tf.range(tf.shape(masks)[0]), [size, size], method="bilinear", extrapolation_value=0.0)
    return crops[..., 0]


def instance_train_pipeline(
    ds,
    image_size,
    batch_size,
    *,
    max_size=1333,
    max_instances=None,
    flip=True,
    drop_crowd=True,
    pad_size=None,
    scale_jitter=None,
    seed=None,
    shuffle_buffer=256,
    drop_remainder=False,
    keypoint_flip_indices=None,
    mask_crop_size=None,
):
    """Resize, pad and batch an instance dataset for Mask R-CNN training.

    Per image: resize by s = min(S / short side, max_size / long side[,
    P / long side]) (image bilinear, masks bilinear then >= 0.5, boxes times the
    per-axis factors), optional horizontal flip (image, boxes and masks
    together; x1' = w - x2, x2' = w - x1 with w the resized width), and pad the
    instances with class-0 rows: by default (`max_instances=None`) each batch to
    its own largest instance count (at least 1 row), so no instance is ever
    dropped (torchvision and detectron2 have no cap either: a microscopy image
    with 400 nuclei trains on all 400) and matching costs what the batch holds;
    with `max_instances=M` every image to M rows (the first M instances kept).
    Images with no instances are kept (all rows padding).
    Images (and masks) are padded bottom/right with zeros: by default each batch
    to its own largest height and width rounded up to a multiple of 32 (as
    torchvision batches; a set of 128 x 128 images trains at 128 x 128, not at
    the 224 x 224 square `instance_pad_size(128)` that fits any aspect ratio, 3x
    the pixels), or, with `pad_size=P`, every image to the fixed P x P (static
    shapes; images whose long side would exceed P are shrunk to fit).

    Keypoints (elements with "keypoints" float32 [N, K, 3], x, y pixels and
    v): x, y are scaled as the boxes; a flip mirrors x' = w - x (torchvision's
    reference transform) and permutes the keypoints by `keypoint_flip_indices`
    (left_* <-> right_*, `segzoo.data.keypoints.flip_indices`); x, y are zeroed
    where v = 0 and padding rows are all zero.

    Multi-scale training: with several sizes, S is drawn per image uniformly
    among them (torchvision's `GeneralizedRCNNTransform` / detectron2's
    `ResizeShortestEdge(..., "choice")`); inference should use the largest.

    Large-scale jitter (`scale_jitter=(low, high)`, Ghiasi et al. 2021; 0.1, 2.0
    in the paper, detectron2's `ResizeScale` + `FixedSizeCrop`): instead of the
    short-side resize, the image is scaled by j * min(T / H, T / W) with
    j ~ U(low, high) and T = max(image_size), a random T x T window of it is
    kept (padded when smaller), and boxes are re-derived from the cropped masks
    (instances left with an empty mask are dropped).

    Args:
        ds: unbatched instance dataset (see `segzoo.data.load`).
        image_size: target short side S in pixels, or a list of them (multi-scale).
        batch_size: B.
        max_size: cap on the long side.
        max_instances: None (rows = the batch's largest instance count) or M
            (a fixed M rows; required with `pad_size`, static shapes).
        flip: random horizontal flips.
        drop_crowd: remove crowd instances (COCO practice: they take no part in
            matching). With False they are kept and targets gain
            "is_crowd" bool [B, M].
        pad_size: None (default: per-batch padding to multiples of 32, above) or
            P (multiple of 32): a fixed P x P for every batch
            (`instance_pad_size(max(image_size), max_size)` fits every aspect ratio).
        scale_jitter: None, or (low, high) of large-scale jitter (above; not with keypoints).
        seed: int for reproducible shuffling and flips, None for random.
        shuffle_buffer: shuffle buffer size (0 disables shuffling).
        drop_remainder: drop the last partial batch.
        keypoint_flip_indices: K ints, the flip permutation of the keypoints;
            required when elements have keypoints and `flip` is True.
        mask_crop_size: None (full-image "masks"), or C: box-resolution masks
            instead, "mask_crops" float32 [B, M, C, C] in [0, 1], each instance's mask
            sampled on a C x C grid over its box (`mask_crops`; memory instances x C^2,
            not instances x image area; the full-size masks are never resized).

    Returns:
        dataset of (images float32 [B, H, W, 3] in [0, 255], targets) with H, W
        multiples of 32 (P, P with `pad_size`) and targets
        {"boxes": float32 [B, M, 4] xyxy resized-image pixels, "classes": int32
        [B, M] (0 = padding), "masks": uint8 [B, M, H, W]} (M: `max_instances`, or
        the batch's largest instance count) and, for elements with
        keypoints, "keypoints": float32 [B, M, K, 3] (x, y resized-image pixels, v);
        with `mask_crop_size` "mask_crops" float32 [B, M, C, C] replaces "masks".
    """
    sizes = _image_sizes(image_size)
    target = max(sizes)
    if scale_jitter is not None:
        jitter_low, jitter_high = (float(v) for v in scale_jitter)
        if not 0 < jitter_low <= jitter_high:
            raise ValueError(f"scale_jitter must satisfy 0 < low <= high, got {scale_jitter!r}")
        if "keypoints" in ds.element_spec:
            raise ArgumentError(f"{arg('scale_jitter')} (large-scale jitter) is not implemented for "
                                f"keypoint data; train keypoint models without {arg('scale_jitter')}")
    fixed = pad_size is not None
    pad = int(pad_size) if fixed else None
    if fixed and (pad < 32 or pad % 32):
        raise ValueError(f"pad_size must be a positive multiple of 32, got {pad_size!r}")
    # Per-batch padding: no cap from P (the long side is capped by max_size only).
    cap = float(min(max_size, pad)) if fixed else float(max_size)
    if max_instances is None and fixed:
        raise ValueError("pad_size (static shapes) needs a fixed max_instances, got None")
    max_instances = None if max_instances is None else int(max_instances)
    crop_size = None if mask_crop_size is None else int(mask_crop_size)
    if crop_size is not None and crop_size < 2:
        raise ValueError(f"mask_crop_size must be an int >= 2 or None, got {mask_crop_size!r}")
    size_table = tf.constant(sizes, tf.float32)
    has_keypoints = "keypoints" in ds.element_spec
    flip_order = None
    if has_keypoints:
        num_keypoints = ds.element_spec["keypoints"].shape[1]
        if flip:
            if keypoint_flip_indices is None:
                raise ValueError(
                    "the dataset has keypoints: flipping needs keypoint_flip_indices "
                    "(segzoo.data.keypoints.flip_indices(info.keypoint_names)) or flip=False"
                )
            flip_order = [int(i) for i in keypoint_flip_indices]
            if sorted(flip_order) != list(range(num_keypoints)):
                raise ValueError(
                    f"keypoint_flip_indices must be a permutation of 0..{num_keypoints - 1}, "
                    f"got {flip_order}"
                )

    def jitter(image, masks, classes, is_crowd, seed_scale, seed_y, seed_x):
        """Large-scale jitter of the module doc: scale, random T x T window, re-derived boxes."""
        height = tf.cast(tf.shape(image)[0], tf.float32)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        factor = tf.random.stateless_uniform([], seed_scale, jitter_low, jitter_high)
        scale = factor * tf.minimum(target / height, target / width)
        new_h = tf.maximum(1, tf.cast(tf.round(height * scale), tf.int32))
        new_w = tf.maximum(1, tf.cast(tf.round(width * scale), tf.int32))
        image = tf.image.resize(image, [new_h, new_w], method="bilinear")
        n = tf.shape(masks)[0]
        resized = tf.image.resize(tf.cast(masks, tf.float32)[..., None], [new_h, new_w])
        masks = tf.reshape(tf.cast(resized[..., 0] >= 0.5, tf.uint8), [n, new_h, new_w])
        win_h, win_w = tf.minimum(new_h, target), tf.minimum(new_w, target)
        y0 = tf.random.stateless_uniform([], seed_y, 0, new_h - win_h + 1, dtype=tf.int32)
        x0 = tf.random.stateless_uniform([], seed_x, 0, new_w - win_w + 1, dtype=tf.int32)
        image = image[y0 : y0 + win_h, x0 : x0 + win_w]
        masks = masks[:, y0 : y0 + win_h, x0 : x0 + win_w]
        boxes, present = _boxes_of_masks(masks)
        boxes, classes = tf.boolean_mask(boxes, present), tf.boolean_mask(classes, present)
        masks, is_crowd = tf.boolean_mask(masks, present), tf.boolean_mask(is_crowd, present)
        return image, boxes, classes, masks, is_crowd, win_h, win_w

    def prepare(element, seed2):
        image = tf.cast(element["image"], tf.float32)
        boxes = tf.cast(element["boxes"], tf.float32)
        classes = tf.cast(element["classes"], tf.int32)
        masks = element["masks"]
        is_crowd = tf.cast(element["is_crowd"], tf.bool)
        points = tf.cast(element["keypoints"], tf.float32) if has_keypoints else None
        if drop_crowd:
            keep = tf.logical_not(is_crowd)
            boxes, classes = tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)
            masks, is_crowd = tf.boolean_mask(masks, keep), tf.boolean_mask(is_crowd, keep)
            if has_keypoints:
                points = tf.boolean_mask(points, keep)
        seed_size, seed_y, seed_x = _split_seed(seed2, 3)  # seed2 itself: the flip
        if scale_jitter is not None:
            image, boxes, classes, masks, is_crowd, new_h, new_w = jitter(
                image, masks, classes, is_crowd, seed_size, seed_y, seed_x)
            if crop_size:
                masks = mask_crops(masks, boxes, crop_size)
        else:
            if len(sizes) > 1:
                pick = tf.random.stateless_uniform([], seed_size, 0, len(sizes), dtype=tf.int32)
                short_side = size_table[pick]
            else:
                short_side = float(sizes[0])
            height = tf.cast(tf.shape(image)[0], tf.float32)
            width = tf.cast(tf.shape(image)[1], tf.float32)
            short, long = tf.minimum(height, width), tf.maximum(height, width)
            scale = tf.minimum(short_side / short, cap / long)
            limit = pad if fixed else int(math.ceil(cap))
            new_h = tf.clip_by_value(tf.cast(tf.round(height * scale), tf.int32), 1, limit)
            new_w = tf.clip_by_value(tf.cast(tf.round(width * scale), tf.int32), 1, limit)
            image = tf.image.resize(image, [new_h, new_w], method="bilinear")
            sx = tf.cast(new_w, tf.float32) / width
            sy = tf.cast(new_h, tf.float32) / height
            boxes = boxes * tf.stack([sx, sy, sx, sy])
            if has_keypoints:
                points = points * tf.stack([sx, sy, 1.0])
            if crop_size:  # from the source masks, over the boxes in source pixels
                masks = mask_crops(masks, boxes / tf.stack([sx, sy, sx, sy]), crop_size)
            else:
                n = tf.shape(masks)[0]
                resized = tf.image.resize(
                    tf.cast(masks, tf.float32)[..., None], [new_h, new_w], method="bilinear"
                )
                masks = tf.cast(resized[..., 0] >= 0.5, tf.uint8)
                masks = tf.reshape(masks, [n, new_h, new_w])
        if flip:
            do_flip = tf.random.stateless_uniform([], seed2) < 0.5
            w = tf.cast(new_w, tf.float32)
            flipped = tf.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
            image = tf.cond(do_flip, lambda: image[:, ::-1], lambda: image)
            masks = tf.cond(do_flip, lambda: masks[:, :, ::-1], lambda: masks)  # crops: the same
            boxes = tf.cond(do_flip, lambda: flipped, lambda: boxes)
            if has_keypoints:
                mirrored = tf.gather(points, flip_order, axis=1)
                mirrored = tf.concat([w - mirrored[..., :1], mirrored[..., 1:]], axis=-1)
                points = tf.cond(do_flip, lambda: mirrored, lambda: points)
        out_h, out_w = (pad, pad) if fixed else (new_h, new_w)
        image = tf.pad(image, [[0, out_h - new_h], [0, out_w - new_w], [0, 0]])
        if max_instances is None:  # every instance; one padding row for an empty image
            limit = tf.shape(classes)[0]
            rows = tf.maximum(1 - limit, 0)
        else:
            limit = max_instances
            rows = max_instances - tf.shape(masks[:max_instances])[0]
        masks = masks[:limit]
        targets = {
            "boxes": tf.pad(boxes[:limit], [[0, rows], [0, 0]]),
            "classes": tf.pad(classes[:limit], [[0, rows]]),
        }
        if crop_size:
            masks = tf.pad(masks, [[0, rows], [0, 0], [0, 0]])
            targets["mask_crops"] = tf.ensure_shape(masks, [max_instances, crop_size, crop_size])
        else:
            masks = tf.pad(masks, [[0, rows], [0, out_h - new_h], [0, out_w - new_w]])
            targets["masks"] = tf.ensure_shape(masks, [max_instances, pad, pad])
        targets["boxes"] = tf.ensure_shape(targets["boxes"], [max_instances, 4])
        targets["classes"] = tf.ensure_shape(targets["classes"], [max_instances])
        if not drop_crowd:
            crowd = tf.pad(is_crowd[:limit], [[0, rows]], constant_values=False)
            targets["is_crowd"] = tf.ensure_shape(crowd, [max_instances])
        if has_keypoints:
            points = points * tf.cast(points[..., 2:] > 0, tf.float32)
            points = tf.pad(points[:limit], [[0, rows], [0, 0], [0, 0]])
            targets["keypoints"] = tf.ensure_shape(points, [max_instances, num_keypoints, 3])
        return tf.ensure_shape(image, [pad, pad, 3]), targets

    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = _with_seeds(ds, seed)
    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
    if fixed:
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)
    ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(_pad_batch_to_32, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def _pad_batch_to_32(images, targets):
    """Pads a batch's images [B, H, W, 3] and masks [B, M, H, W] bottom/right to multiples of 32."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    extra_h, extra_w = -height % 32, -width % 32
    images = tf.pad(images, [[0, 0], [0, extra_h], [0, extra_w], [0, 0]])
    targets = dict(targets)
    if "masks" in targets:
        targets["masks"] = tf.pad(targets["masks"], [[0, 0], [0, 0], [0, extra_h], [0, extra_w]])
    return images, targets
