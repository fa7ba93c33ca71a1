"""`shapes`: a synthetic dataset of filled circles, rectangles and triangles.

Generated on the fly, no download, deterministic: image `i` of split `s` is
drawn from `numpy.random.default_rng([seed, code(s), i])`, so the same seed
gives the same images in any order or parallelism and the splits differ.

Each image has a random background (a linear colour gradient plus uniform
noise) and 0..`max_objects` shapes (about 10% of the images have none: they
are negatives) of random colour (kept away from the background colour),
size and position. Later shapes occlude earlier ones; a shape that would
hide more than half of an earlier shape is re-drawn elsewhere (or left out),
so every instance stays at least half visible and its mask is exactly its
visible part.

Labels: 0 background, 1 circle, 2 rectangle (axis-aligned, squares
included), 3 triangle.

    load("shapes", "train")                    # semantic: image, mask, image_id
    load("shapes", "val", task="instance")     # image, boxes, classes, masks, ...

Keypoints (`task="instance", keypoints=True`, the built-in data of
Keypoint R-CNN): every shape has K = 4 keypoints, its extreme points
("top", "left", "right", "bottom", as ExtremeNet's) of the shape as drawn
(before occlusion, inside the image). Where the extreme is a run of pixels
(a rectangle's edge, a circle's flat top) the point is the run's middle.
Coordinates are pixel centres (column + 0.5, row + 0.5), continuous
coordinates like the boxes; v = 2 where the point's pixel is visible, 1 where
a later shape hides it. A horizontal flip swaps "left" and "right".

Semantic view: num_classes 4 (background included); instance view: K = 3.
Options: `seed=0`, `num_images` (default train 512, val 64, test 64),
`image_size=128` (an int, or a `(min, max)` range: height and width are
drawn independently in it), `max_objects=4`, `keypoints=False`, `cache=True` (keep generated
images in memory, per `load` call, when they fit in 1 GiB: later epochs only
pay for augmentation).
"""

from __future__ import annotations

import cv2
import numpy as np
import tensorflow as tf

from segzoo.data import elements
from segzoo.data.registry import DatasetInfo, check_split, register_dataset

CLASS_NAMES = ("background", "circle", "rectangle", "triangle")
KEYPOINT_NAMES = ("top", "left", "right", "bottom")
SKELETON = ((0, 1), (1, 3), (3, 2), (2, 0))  # the diamond top-left-bottom-right
SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_DEFAULT_NUM_IMAGES = {"train": 512, "val": 64, "test": 64}
_NEGATIVE_FRACTION = 0.1
_MAX_TRIES = 10
_CACHE_LIMIT_BYTES = 1 << 30


def _image_hw(rng, image_size):
    if isinstance(image_size, int | np.integer):
        return int(image_size), int(image_size)
    low, high = (int(v) for v in image_size)
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def _background(rng, height, width):
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    xs = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle))
    ys = np.arange(height, dtype=np.float32) * np.float32(np.sin(angle))
    t = ys[:, None] + xs[None, :]
    t -= t.min()
    t *= 1.0 / max(float(t.max()), 1.0)
    bg = c0 + (c1 - c0) * t[..., None]
    return bg, (c0 + c1) / 2


def _shape_mask(rng, cls, height, width):
    size = min(height, width)
    radius = max(3.0, rng.uniform(0.08, 0.25) * size)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    mask = np.zeros((height, width), np.uint8)
    if cls == 1:
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1, cv2.LINE_8)
    elif cls == 2:
        half_w, half_h = radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.6, 1.0)
        pt1 = (int(round(cx - half_w)), int(round(cy - half_h)))
        pt2 = (int(round(cx + half_w)), int(round(cy + half_h)))
        cv2.rectangle(mask, pt1, pt2, 1, -1, cv2.LINE_8)
    else:
        theta = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        theta = theta + rng.uniform(-0.25, 0.25, size=3)
        pts = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1, cv2.LINE_8)
    return mask.astype(bool)


def extreme_points(mask: np.ndarray) -> np.ndarray:
    """float32 [4, 2] (x, y) pixel centres of the top, left, right, bottom extremes of a
    non-empty bool mask [H, W]; a run of extreme pixels gives its mean position."""
    ys, xs = np.nonzero(mask)
    points = []
    for coords, other, pick in ((ys, xs, ys.min()), (xs, ys, xs.min()),
                                (xs, ys, xs.max()), (ys, xs, ys.max())):  # fmt: skip
        run = other[coords == pick].mean()
        points.append((run, pick) if coords is ys else (pick, run))
    return np.asarray(points, np.float32) + np.float32(0.5)


def render(rng: np.random.Generator, image_size=128, max_objects: int = 4, keypoints=False):
    """Draw one image.

    Returns:
        image uint8 [H, W, 3]; instance_map int32 [H, W] (0 = background,
        i = visible pixels of the i-th kept shape, 1-based); classes int32 [N]
        (1 circle, 2 rectangle, 3 triangle), N may be 0; with `keypoints`, also
        float32 [N, 4, 3] (x, y, v) extreme points (module doc). The random
        draws are the same either way.
    """
    height, width = _image_hw(rng, image_size)
    image, bg_mean = _background(rng, height, width)
    instance_map = np.zeros((height, width), np.int32)
    classes, full_areas, shapes = [], [], []
    num = 0 if rng.random() < _NEGATIVE_FRACTION else int(rng.integers(1, max_objects + 1))
    for _ in range(num):
        cls = int(rng.integers(1, 4))
        for _try in range(_MAX_TRIES):
            shape = _shape_mask(rng, cls, height, width)
            area = int(shape.sum())
            if area < 16:
                continue
            # Keep every earlier instance at least half visible.
            covered = np.bincount(instance_map[shape], minlength=len(classes) + 1)[1:]
            visible = np.bincount(instance_map.ravel(), minlength=len(classes) + 1)[1:]
            if np.all(visible - covered >= 0.5 * np.asarray(full_areas, np.float64)):
                break
        else:
            continue
        for _c in range(_MAX_TRIES):
            colour = rng.uniform(0, 255, size=3)
            if np.abs(colour - bg_mean).sum() > 120:
                break
        image[shape] = colour.astype(np.float32)
        classes.append(cls)
        full_areas.append(area)
        shapes.append(shape)
        instance_map[shape] = len(classes)
    amplitude = int(rng.integers(6, 25))
    image += rng.integers(-amplitude, amplitude + 1, size=image.shape, dtype=np.int16)
    image = np.clip(image, 0, 255, out=image).astype(np.uint8)
    # Drop instances that ended up fully hidden (renumber the rest).
    present = np.bincount(instance_map.ravel(), minlength=len(classes) + 1)[1:] > 0
    remap = np.zeros(len(classes) + 1, np.int32)
    remap[1:][present] = np.arange(1, int(present.sum()) + 1)
    instance_map = remap[instance_map]
    classes = np.asarray(classes, np.int32)[present]
    if not keypoints:
        return image, instance_map, classes
    points = np.zeros((len(classes), len(KEYPOINT_NAMES), 3), np.float32)
    kept = [shape for shape, p in zip(shapes, present, strict=True) if p]
    for i, shape in enumerate(kept):
        xy = extreme_points(shape)
        cols, rows = xy[:, 0].astype(np.int64), xy[:, 1].astype(np.int64)
        points[i, :, :2] = xy
        points[i, :, 2] = np.where(instance_map[rows, cols] == i + 1, 2.0, 1.0)
    return image, instance_map, classes, points


def instance_targets(instance_map: np.ndarray, classes: np.ndarray):
    """(boxes float32 [N, 4] xyxy, masks uint8 [N, H, W]) from an instance map.

    A box spans the mask's pixels: [x_min, y_min, x_max + 1, y_max + 1].
    """
    n = len(classes)
    masks = (instance_map[None] == np.arange(1, n + 1)[:, None, None]).astype(np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    for i in range(n):
        ys = np.flatnonzero(masks[i].any(axis=1))
        xs = np.flatnonzero(masks[i].any(axis=0))
        boxes[i] = [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
    return boxes, masks


def _options(split, seed, num_images, image_size, max_objects):
    check_split("shapes", split, SPLITS)
    if num_images is None:
        num_images = _DEFAULT_NUM_IMAGES[split]
    if int(num_images) < 1:
        raise ValueError(f"shapes: num_images must be >= 1, got {num_images!r}")
    if not isinstance(image_size, int | np.integer):
        if len(image_size) != 2 or not 16 <= int(image_size[0]) <= int(image_size[1]):
            raise ValueError(
                f"shapes: image_size must be an int >= 16 or a (min, max) pair with "
                f"16 <= min <= max, got {image_size!r}"
            )
        image_size = (int(image_size[0]), int(image_size[1]))
    elif image_size < 16:
        raise ValueError(f"shapes: image_size must be >= 16, got {image_size!r}")
    if max_objects < 0:
        raise ValueError(f"shapes: max_objects must be >= 0, got {max_objects!r}")
    return int(num_images), image_size


def load_shapes(
    split,
    data_dir=None,
    *,
    task="semantic",
    seed=0,
    num_images=None,
    image_size=128,
    max_objects=4,
    keypoints=False,
    cache=True,
):
    """The shapes split as a `tf.data.Dataset` (module doc); `data_dir` is unused."""
    if task not in ("semantic", "instance"):
        raise ValueError(f"shapes: task must be 'semantic' or 'instance', got {task!r}")
    if keypoints and task != "instance":
        raise ValueError("shapes: keypoints=True needs task='instance' (keypoints are per instance)")
    num_images, image_size = _options(split, seed, num_images, image_size, max_objects)
    code = _SPLIT_CODES[split]
    side = image_size if isinstance(image_size, int) else image_size[1]
    bytes_per_image = side * side * (4 if task == "semantic" else 3 + max(max_objects, 1))
    memo = {} if cache and num_images * bytes_per_image <= _CACHE_LIMIT_BYTES else None

    def generate(index):
        index = int(index)
        if memo is not None and index in memo:
            return memo[index]
        rng = np.random.default_rng([int(seed), code, index])
        image, instance_map, classes, *points = render(rng, image_size, max_objects, keypoints)
        if task == "semantic":
            lut = np.concatenate([[0], classes]).astype(np.uint8)
            result = image, lut[instance_map]
        else:
            boxes, masks = instance_targets(instance_map, classes)
            result = image, boxes, classes, masks, *points
        if memo is not None:
            memo[index] = result
        return result

    def semantic(index):
        image_id = tf.strings.join(
            [f"shapes_{split}_", tf.strings.as_string(index, width=5, fill="0")]
        )
        return {**elements.numpy_element(generate, index, elements.SEMANTIC), "image_id": image_id}

    spec = elements.INSTANCE
    if keypoints:
        spec = elements.with_keypoints(spec, len(KEYPOINT_NAMES))

    def instance(index):
        element = elements.numpy_element(generate, index, spec)
        is_crowd = tf.zeros_like(element["classes"], dtype=tf.bool)
        return {**element, "is_crowd": is_crowd, "image_id": index}

    ds = tf.data.Dataset.range(num_images)
    fn = semantic if task == "semantic" else instance
    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def shapes_info(data_dir=None, *, task="semantic", keypoints=False, **_):
    """`DatasetInfo` of the semantic (4 classes) or instance (3 classes, optionally with
    4 keypoints) view."""
    if task == "semantic":
        if keypoints:
            raise ValueError("shapes: keypoints=True needs task='instance'")
        return DatasetInfo("semantic", 4, CLASS_NAMES, splits=SPLITS)
    if task == "instance":
        extra = {"keypoint_names": KEYPOINT_NAMES, "skeleton": SKELETON} if keypoints else {}
        return DatasetInfo(
            "instance", 3, CLASS_NAMES[1:], category_ids=(1, 2, 3), splits=SPLITS, **extra
        )
    raise ValueError(f"shapes: task must be 'semantic' or 'instance', got {task!r}")


register_dataset(
    "shapes",
    loader=load_shapes,
    info=shapes_info,
    description="synthetic circles/rectangles/triangles, generated, deterministic by seed",
)
