"""Detections of one image with compact masks: box-sized crops, COCO RLE for files.

A Mask R-CNN output holds one full-image mask per detection ([N, H, W] uint8);
for a 10,000 x 10,000 image with hundreds of detections that is gigabytes.
`Instances` keeps, per detection, only the mask pixels inside the mask's own
bounding rectangle (`crops[i] = (y0, x0, bool [h, w])`), and writes COCO RLE
(`pycocotools.mask` format, column-major runs) for the full image straight
from the crop, without ever building the full-image mask (`crop_to_rle`).

Conventions: boxes float32 [N, 4] `[x1, y1, x2, y2]` in image pixels; scores
float32 [N]; classes int32 [N] (1..K); detections sorted by descending score.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from pycocotools import mask as mask_utils


def crop_to_rle(crop: np.ndarray, y0: int, x0: int, height: int, width: int) -> dict:
    """COCO compressed RLE {"size": [H, W], "counts": str} of the [H, W] mask that is
    zero except `crop` (bool [h, w]) placed with its top-left pixel at (y0, x0).

    Equal to `pycocotools.mask.encode` of that full mask (tested), in memory of
    the crop only. COCO RLE counts alternate runs of 0s and 1s over the mask in
    column-major (Fortran) order, starting with a (possibly empty) run of 0s.
    """
    crop = np.asarray(crop, bool)
    h, w = crop.shape
    if y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
        raise ValueError(f"crop [{h}, {w}] at ({y0}, {x0}) is outside the image [{height}, {width}]")
    columns = np.pad(crop.T.astype(np.int8), ((0, 0), (1, 1)))  # [w, h + 2]
    edges = np.diff(columns, axis=1)  # +1 where a run starts, -1 one past its end
    start_col, start_row = np.nonzero(edges == 1)
    _, end_row = np.nonzero(edges == -1)  # same (column, row) order as the starts
    offset = (x0 + start_col).astype(np.int64) * height + y0
    starts, ends = offset + start_row, offset + end_row
    if starts.size > 1:  # a run reaching a column's bottom continues at the next column's top
        joined = starts[1:] == ends[:-1]
        if joined.any():
            starts = starts[np.concatenate([[True], ~joined])]
            ends = ends[np.concatenate([~joined, [True]])]
    counts = np.empty(2 * starts.size + 1, np.int64)
    previous_end = np.concatenate([[0], ends[:-1]])
    counts[0:-1:2] = starts - previous_end
    counts[1::2] = ends - starts
    counts[-1] = height * width - (ends[-1] if ends.size else 0)
    if counts.size > 1 and counts[-1] == 0:  # pycocotools writes no empty final run of 0s
        counts = counts[:-1]
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts.tolist()}, height, width)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def mask_crop(mask: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(y0, x0, bool crop) of a full mask [H, W], cropped to its set pixels ((0, 0, [0, 0]) if none)."""
    mask = np.asarray(mask) != 0
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0, 0, np.zeros((0, 0), bool)
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return int(y0), int(x0), mask[y0:y1, x0:x1].copy()


@dataclasses.dataclass
class Instances:
    """Detections of one image (see module docstring for the conventions).

    Attributes:
        image_size: (H, W) of the image the detections are in.
        boxes: float32 [N, 4]; scores: float32 [N]; classes: int32 [N].
        crops: N tuples (y0, x0, bool [h, w]): mask pixels inside the image.
        extras: more per-detection arrays with N rows, carried along (e.g.
            "mask_scores" [N], "keypoints" [N, P, 3] (x, y, score) in image pixels).
    """

    image_size: tuple
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    crops: list
    extras: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_masks(cls, boxes, scores, classes, masks, offset=(0, 0), image_size=None, **extras):
        """From full masks uint8 [N, h, w] of an image (or a tile placed at `offset` = (y, x)
        in an image of `image_size`); sorted by descending score (stable). `extras`: more
        [N, ...] arrays; "keypoints" (x, y, score) move with the offset too."""
        masks = np.asarray(masks)
        oy, ox = (int(v) for v in offset)
        size = tuple(image_size) if image_size is not None else tuple(masks.shape[1:3])
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4) + np.float32([ox, oy, ox, oy])
        crops = []
        for mask in masks:
            y0, x0, crop = mask_crop(mask)
            crops.append((y0 + oy, x0 + ox, crop))
        extras = {k: np.asarray(v) for k, v in extras.items()}
        if "keypoints" in extras:
            keypoints = extras["keypoints"].astype(np.float32, copy=True)
            keypoints[..., 0] += ox
            keypoints[..., 1] += oy
            extras["keypoints"] = keypoints
        return cls(size, boxes, np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(classes, np.int32).reshape(-1), crops, extras).sorted()

    @classmethod
    def concatenate(cls, parts, image_size):
        parts = list(parts)
        if not parts:
            return cls(tuple(image_size), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                       np.zeros(0, np.int32), [])
        return cls(tuple(image_size), np.concatenate([p.boxes for p in parts]),
                   np.concatenate([p.scores for p in parts]),
                   np.concatenate([p.classes for p in parts]),
                   [c for p in parts for c in p.crops],
                   {k: np.concatenate([p.extras[k] for p in parts]) for k in parts[0].extras})

    def select(self, indices) -> Instances:
        indices = np.asarray(indices, np.int64).reshape(-1)
        return Instances(self.image_size, self.boxes[indices], self.scores[indices],
                         self.classes[indices], [self.crops[i] for i in indices],
                         {k: v[indices] for k, v in self.extras.items()})

    def sorted(self) -> Instances:
        return self.select(np.argsort(-self.scores, kind="stable"))

    def rles(self) -> list[dict]:
        """COCO compressed RLE of each full-image mask, counts as str (JSON-ready)."""
        height, width = self.image_size
        return [crop_to_rle(crop, y0, x0, height, width) for y0, x0, crop in self.crops]

    def areas(self) -> np.ndarray:
        """Mask pixel counts int64 [N]."""
        return np.array([int(crop.sum()) for _, _, crop in self.crops], np.int64)

    def masks(self) -> np.ndarray:
        """Full masks uint8 [N, H, W] (memory N * H * W: for evaluation-sized images)."""
        masks = np.zeros((len(self), *self.image_size), np.uint8)
        for i, (y0, x0, crop) in enumerate(self.crops):
            masks[i, y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return masks

    def id_map(self) -> np.ndarray:
        """uint16 [H, W]: i + 1 where detection i's mask is set (0 = none); the higher
        score wins where masks overlap (as `segzoo predict`'s NAME.png)."""
        ids = np.zeros(self.image_size, np.uint16)
        for i in np.argsort(self.scores, kind="stable"):  # low to high: the best is painted last
            y0, x0, crop = self.crops[i]
            region = ids[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]]
            region[crop] = i + 1
        return ids
