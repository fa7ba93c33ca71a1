"""Images larger than memory: sliding-window inference (`--tile SIZE --overlap PX`).

Tile grid (`tile_starts`): along each axis of length L, tiles of
`min(SIZE, L)` pixels start at 0, SIZE - PX, 2 (SIZE - PX), ... and the last
one is shifted in to end at L (mmsegmentation's `slide` mode), so every tile
has the same size (one traced model call) and no padding is invented. An image
that fits one tile is predicted whole, by the same call as without `--tile`:
tiled and untiled outputs are then identical.

Semantic (`sliding_window_labels`): each tile's softmax probabilities are
weighted by a window that is largest at the tile centre and small but
positive at its edges, and the image's probability is
sum(w * p) / sum(w) over the tiles covering a pixel, so tile borders (where a
model sees no context) count little and no seam shows. Windows: "gaussian"
(sigma = SIZE / 8 per axis, MONAI's `sliding_window_inference` importance map,
floored at 1e-3) or "linear" (a ramp over the PX overlap pixels at each edge,
1 inside). Tiles are run `batch_size` at a time and blended into a strip one
tile high and the image wide; rows no later tile touches are turned into labels
and the strip moves down. Memory: the image, its labels, the strip
(SIZE x W x K float32, twice) and one tile batch through the model, not the
model's activations at full image size.

Instance (`tiled_instances`): each tile is detected on its own; boxes and
masks move to image coordinates (masks kept as crops, `Instances`); duplicates
of one object seen by two overlapping tiles are merged greedily: a detection
is dropped when a detection of the same class from another tile, kept before
it, overlaps it with mask IoU > `iou_threshold`, or, for a detection cut by
an inner tile edge, covers more than `containment` of its mask. Uncut
detections are kept first, then by score. An object is seen whole when the
overlap is at least its size; pieces of objects larger than a tile stay
separate detections.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from segzoo.errors import ArgumentError, arg
from segzoo.inference.instances import Instances

WINDOWS = ("gaussian", "linear")


def check_tiling(tile_size, overlap) -> tuple[int, int]:
    """(tile, overlap) as ints; ValueError unless tile >= 1 and 0 <= overlap < tile."""
    if tile_size is None or isinstance(tile_size, bool) or int(tile_size) != tile_size or tile_size < 1:
        raise ArgumentError(f"{arg('tile_size')} must be a positive number of pixels, got {tile_size!r}")
    overlap = 0 if overlap is None else overlap
    if isinstance(overlap, bool) or int(overlap) != overlap or not 0 <= overlap < tile_size:
        raise ArgumentError(f"{arg('overlap')} must be >= 0 and < {arg('tile_size', tile_size)}, "
                            f"got {overlap!r}")
    return int(tile_size), int(overlap)


def tile_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along an axis of `length` pixels (see module docstring)."""
    tile_size, overlap = check_tiling(tile_size, overlap)
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    starts = list(range(0, length - tile_size, stride))
    starts.append(length - tile_size)
    return starts


def tile_grid(height: int, width: int, tile_size: int, overlap: int):
    """[(y0, x0)], tile height, tile width: the tiles of an image, row by row."""
    ys, xs = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    return [(y, x) for y in ys for x in xs], min(tile_size, height), min(tile_size, width)


def window_1d(size: int, overlap: int, kind: str = "gaussian") -> np.ndarray:
    """Blending weights float32 [size], > 0 everywhere."""
    if kind == "gaussian":
        sigma = size / 8.0
        x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
        weights = np.exp(-0.5 * (x / sigma) ** 2)
        return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)
    if kind == "linear":
        if overlap <= 0:
            return np.ones(size, np.float32)
        i = np.arange(size, dtype=np.float64)
        ramp = np.minimum((i + 0.5) / overlap, (size - i - 0.5) / overlap)
        return np.clip(ramp, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"window {kind!r}: expected one of {', '.join(WINDOWS)}")


def window_2d(height: int, width: int, overlap: int, kind: str = "gaussian") -> np.ndarray:
    """float32 [height, width] = outer product of the two axes' `window_1d`."""
    return np.outer(window_1d(height, overlap, kind), window_1d(width, overlap, kind))


def labels_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.int32


def sliding_window_labels(fn, image, tile_size: int, overlap: int, *, window: str = "gaussian",
                          batch_size: int = 4, return_probabilities: bool = False):
    """Class ids [H, W] of a large image from tile probabilities (see module docstring).

    Args:
        fn: `fn(images float32 [B, h, w, 3]) -> probabilities float32 [B, h, w, K]`
            (e.g. `segzoo.inference.tta.probability_fn(model)`, maybe with TTA).
        image: [H, W, 3] pixels 0..255 (uint8 or float).
        tile_size, overlap: pixels (0 <= overlap < tile_size).
        window: "gaussian" or "linear".
        batch_size: tiles per model call (bounds the memory of the model's activations).
        return_probabilities: also return the blended probabilities float32
            [H, W, K] (an image-sized array: only for images that fit memory).

    Returns:
        labels uint8 [H, W] (int32 when K > 256), argmax of the blended
        probabilities; or (labels, probabilities).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    tile_size, overlap = check_tiling(tile_size, overlap)
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: expected one of {', '.join(WINDOWS)}")
    height, width = image.shape[:2]
    ys, xs = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    if len(ys) == len(xs) == 1:  # one tile: the untiled prediction, exactly
        probabilities = np.asarray(fn(image[None].astype(np.float32)))[0]
        labels = probabilities.argmax(-1).astype(labels_dtype(probabilities.shape[-1]))
        return (labels, probabilities) if return_probabilities else labels
    th, tw = min(tile_size, height), min(tile_size, width)
    weight = window_2d(th, tw, overlap, window)
    labels = full = None
    strip = weights = None  # rows [top, top + th) of the image
    top = 0

    def flush(end):  # rows [top, end) are final
        nonlocal labels, full
        rows = end - top
        blended = strip[:rows] / weights[:rows, :, None]
        if labels is None:
            labels = np.empty((height, width), labels_dtype(blended.shape[-1]))
            if return_probabilities:
                full = np.empty((height, width, blended.shape[-1]), np.float32)
        labels[top:end] = blended.argmax(-1)
        if full is not None:
            full[top:end] = blended
        strip[:th - rows] = strip[rows:].copy()
        strip[th - rows:] = 0
        weights[:th - rows] = weights[rows:].copy()
        weights[th - rows:] = 0

    for y in ys:
        if strip is not None and y > top:
            flush(y)
            top = y
        for i in range(0, len(xs), max(1, int(batch_size))):
            row_xs = xs[i:i + max(1, int(batch_size))]
            tiles = np.stack([image[y:y + th, x:x + tw] for x in row_xs]).astype(np.float32)
            probabilities = np.asarray(fn(tiles), np.float32)
            if strip is None:
                strip = np.zeros((th, width, probabilities.shape[-1]), np.float32)
                weights = np.zeros((th, width), np.float32)
            for x, p in zip(row_xs, probabilities, strict=True):
                strip[y - top:y - top + th, x:x + tw] += p * weight[..., None]
                weights[y - top:y - top + th, x:x + tw] += weight
    flush(height)
    return (labels, full) if return_probabilities else labels


def tiled_instances(detect_fn, image, tile_size: int, overlap: int, *, score_threshold: float = 0.0,
                    iou_threshold: float = 0.5, containment: float = 0.5) -> Instances:
    """Instances of a large image from per-tile detection (see module docstring).

    Args:
        detect_fn: `detect_fn(image uint8/float [h, w, 3]) -> {"boxes" [N, 4] xyxy,
            "scores" [N], "classes" [N], "masks" uint8 [N, h, w]}` (numpy, truncated
            to the valid detections; e.g. `predict_instances(model, image)`).
        image: [H, W, 3] pixels 0..255.
        tile_size, overlap: pixels.
        score_threshold: detections scoring below are dropped in each tile, before merging.
        iou_threshold, containment: the merging rule.

    Returns:
        `Instances` in image pixels, sorted by descending score.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    height, width = image.shape[:2]
    starts, th, tw = tile_grid(height, width, tile_size, overlap)
    parts, tile_index, cut = [], [], []
    for index, (y, x) in enumerate(starts):
        part = detections_to_instances(detect_fn(image[y:y + th, x:x + tw]), score_threshold,
                                       offset=(y, x), image_size=(height, width))
        parts.append(part)
        tile_index += [index] * len(part)
        cut.append(_cut_by_inner_edge(part.boxes, (y, x, th, tw), height, width))
    merged = Instances.concatenate(parts, (height, width))
    if len(starts) == 1:
        return merged
    keep = merge_duplicates(merged, np.asarray(tile_index, np.int64),
                            np.concatenate(cut) if cut else np.zeros(0, bool),
                            iou_threshold=iou_threshold, containment=containment)
    return merged.select(keep).sorted()


def detections_to_instances(out: dict, score_threshold: float = 0.0, offset=(0, 0),
                            image_size=None) -> Instances:
    """`Instances` of a detection dict ({"boxes", "scores", "classes", "masks"} and optional
    per-detection "mask_scores", "keypoints", "keypoint_scores"), scores >= `score_threshold`."""
    keep = np.flatnonzero(np.asarray(out["scores"]) >= score_threshold)
    extras = {k: np.asarray(out[k])[keep] for k in ("mask_scores", "keypoints", "keypoint_scores")
              if k in out}
    if "masks" in out:
        masks = np.asarray(out["masks"])[keep]
    else:  # a model without a mask branch (keypoint_rcnn): empty masks, boxes and extras only
        masks = np.zeros((len(keep), *tuple(image_size)), np.uint8)
    return Instances.from_masks(np.asarray(out["boxes"])[keep], np.asarray(out["scores"])[keep],
                                np.asarray(out["classes"])[keep], masks,
                                offset=offset, image_size=image_size, **extras)


def _cut_by_inner_edge(boxes, tile, height, width, margin=1.0) -> np.ndarray:
    """bool [N]: the box reaches an edge of its tile that is not an edge of the image."""
    y, x, th, tw = tile
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    return (((x > 0) & (x1 <= x + margin)) | ((y > 0) & (y1 <= y + margin))
            | ((x + tw < width) & (x2 >= x + tw - margin)) | ((y + th < height) & (y2 >= y + th - margin)))


def merge_duplicates(instances: Instances, tile_index, cut, *, iou_threshold=0.5,
                     containment=0.5) -> np.ndarray:
    """Indices of `instances` to keep (see module docstring's merging rule)."""
    rles = [dict(r, counts=r["counts"].encode("ascii")) for r in instances.rles()]
    boxes = instances.boxes
    order = np.lexsort((-instances.scores, cut.astype(np.int8)))  # uncut first, then by score
    kept: list[int] = []
    for i in order:
        candidates = [j for j in kept
                      if instances.classes[j] == instances.classes[i] and tile_index[j] != tile_index[i]]
        if candidates:
            others = np.asarray(candidates)
            touching = ((np.minimum(boxes[others, 2], boxes[i, 2]) > np.maximum(boxes[others, 0], boxes[i, 0]))
                        & (np.minimum(boxes[others, 3], boxes[i, 3]) > np.maximum(boxes[others, 1], boxes[i, 1])))
            others = others[touching]
            if others.size:
                targets = [rles[j] for j in others]
                iou = np.asarray(mask_utils.iou([rles[i]], targets, [0] * len(targets))).reshape(-1)
                if (iou > iou_threshold).any():
                    continue
                if cut[i]:
                    # iscrowd=1 makes pycocotools divide by the first mask's area only.
                    inside = np.asarray(mask_utils.iou([rles[i]], targets, [1] * len(targets))).reshape(-1)
                    if (inside > containment).any():
                        continue
        kept.append(int(i))
    return np.sort(np.asarray(kept, np.int64))
