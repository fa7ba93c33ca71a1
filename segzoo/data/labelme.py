"""`labelme`: a folder of labelme JSON files, for semantic and instance models.

Layout::

    DIR/classes.txt              optional: class names, one a line, fixing their order
                                 (labelme's labels.txt: "__ignore__" and "_background_"
                                 lines are allowed and skipped)
    DIR/{split}/NAME.json        labelme files; the image is the JSON's embedded
                                 "imageData" when present (as labelme itself reads it),
                                 else its "imagePath", relative to the JSON's folder
    or DIR/NAME.json             a flat folder: split "val" is every 10th file by sorted
                                 name (at least one), split "train" the others

Splits are the sub-directories of DIR holding .json files (or "train" / "val"
of a flat folder). Class names are the shapes' labels found in every split,
sorted, unless classes.txt gives them (a label it does not list is an error).
`task="semantic"` (default) or `task="instance"` picks the view.

Shapes, rasterised exactly as labelme's `shape_to_mask` (PIL ImageDraw, outline
included): "polygon" (>= 3 points), "rectangle" and "circle" (2 points: corners;
centre and a point on the circle), "mask" (labelme >= 5.3: a base64 PNG in
the box of its 2 points). "line", "linestrip" and "point" shapes mark no area
and are skipped. The label "__ignore__" is 255 (ignore) in the semantic view and
left out of the instance view; "_background_" is class 0.

Semantic view: {"image": uint8 [H, W, 3], "mask": uint8 [H, W] (0 background,
1..K the classes, 255 ignore; later shapes paint over earlier ones, as labelme's
`shapes_to_label`), "image_id": the file stem}; num_classes K + 1.
Instance view: {"image", "boxes" float32 [N, 4] xyxy pixel edges of each mask,
"classes" int32 [N] 1..K, "masks" uint8 [N, H, W], "is_crowd" bool [N] (False),
"image_id" int64 (index in the split)}: shapes with the same label and
group_id are one instance (labelme's convention), every shape without a
group_id its own; instances left with an empty mask are dropped.

Checked when `load` is called (ValueError naming the JSON file): unreadable
JSON, no "shapes" list, a shape without a label or with too few points, an
unknown shape type, a label missing from classes.txt, an image that is
neither embedded nor found. Checked as each element is read (or up front with
`validate=True`): undecodable images and an image whose size differs from the
JSON's imageHeight/imageWidth.
"""

from __future__ import annotations

import base64
import functools
import math
import os

import numpy as np
import tensorflow as tf

from segzoo.data import elements, readers
from segzoo.data.registry import DatasetInfo, register_dataset

IGNORE = "__ignore__"
BACKGROUND = "_background_"
AREA_SHAPES = ("polygon", "rectangle", "circle", "mask")
SKIPPED_SHAPES = ("line", "linestrip", "point", "points")
INSTANCE_ELEMENT = {**elements.INSTANCE, "is_crowd": tf.TensorSpec([None], tf.bool)}
TASKS = ("semantic", "instance")


def _require_dir(data_dir):
    return readers.require_data_dir("labelme", data_dir,
                                    "labelme JSON files (DIR/{split}/*.json or DIR/*.json)")


def _json_files(directory):
    return sorted(f for f in os.listdir(directory) if f.lower().endswith(".json"))


def _layout(data_dir):
    """{split: [JSON paths]}: sub-directories with JSON files, else a flat folder's split."""
    subdirs = sorted(d for d in os.listdir(data_dir)
                     if os.path.isdir(os.path.join(data_dir, d))
                     and _json_files(os.path.join(data_dir, d)))
    if subdirs:
        return {d: [os.path.join(data_dir, d, f) for f in _json_files(os.path.join(data_dir, d))]
                for d in subdirs}
    files = [os.path.join(data_dir, f) for f in _json_files(data_dir)]
    if not files:
        raise ValueError(f"labelme: no .json files in {data_dir!r} or its sub-directories; "
                         "expected labelme JSON files.")
    val = files[9::10] or files[-1:]
    train = [f for f in files if f not in val] or files
    return {"train": train, "val": val}


def _check_shape(shape, index, path):
    """(label, shape_type, points float64 [P, 2], group_id, mask data) of a labelme shape, or
    None for shapes that mark no area."""
    where = f"labelme: {path!r} shape {index}"
    if not isinstance(shape, dict) or not isinstance(shape.get("label"), str) or not shape["label"]:
        raise ValueError(f"{where} has no label; expected a shape with a non-empty 'label'.")
    kind = shape.get("shape_type") or "polygon"
    if kind in SKIPPED_SHAPES:
        return None
    if kind not in AREA_SHAPES:
        raise ValueError(f"{where} ({shape['label']!r}) has shape_type {kind!r}; expected one "
                         f"of {list(AREA_SHAPES + SKIPPED_SHAPES)}.")
    try:
        points = np.asarray(shape.get("points"), np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        points = np.zeros((0, 2))
    needed = 3 if kind == "polygon" else 2
    if len(points) < needed or (kind != "polygon" and len(points) != 2):
        raise ValueError(f"{where} ({shape['label']!r}, {kind}) has {len(points)} points; "
                         f"expected {'at least 3' if kind == 'polygon' else 'exactly 2'}.")
    if kind == "mask" and not isinstance(shape.get("mask"), str):
        raise ValueError(f"{where} ({shape['label']!r}) is a mask shape without 'mask' data.")
    return shape["label"], kind, points, shape.get("group_id"), shape.get("mask")


def _resolve_image(data, path):
    """("bytes", base64 data) or ("file", path) of a labelme file's image."""
    if data.get("imageData"):
        return "bytes", data["imageData"]
    image_path = data.get("imagePath")
    folder = os.path.dirname(path)
    if isinstance(image_path, str) and image_path:
        relative = image_path.replace("\\", "/")
        for candidate in (os.path.join(folder, relative),
                          os.path.join(folder, os.path.basename(relative))):
            if os.path.isfile(candidate):
                return "file", os.path.normpath(candidate)
    raise ValueError(
        f"labelme: {path!r} has no imageData and its imagePath {image_path!r} is not found "
        f"(looked in {folder!r}); expected the image next to the JSON or embedded in it."
    )


def parse_file(path) -> dict:
    """A checked record of one labelme JSON (module doc): shapes, image source, size."""
    data = readers.read_json(path, "labelme")
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise ValueError(f"labelme: {path!r} has no 'shapes' list; expected a labelme file.")
    checked = (_check_shape(shape, i, path) for i, shape in enumerate(data["shapes"]))
    shapes = [shape for shape in checked if shape is not None]
    source = _resolve_image(data, path)
    size = (data.get("imageHeight"), data.get("imageWidth"))
    return {"path": path, "shapes": shapes, "image": source,
            "size": tuple(int(v) for v in size) if all(size) else None}


def _stamp(files):
    return tuple((f, os.stat(f).st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=4)
def _parsed(data_dir, _stamps):
    return {split: [parse_file(f) for f in files] for split, files in _layout(data_dir).items()}


def _records(data_dir):
    layout = _layout(data_dir)
    files = [f for split_files in layout.values() for f in split_files]
    classes = os.path.join(data_dir, "classes.txt")
    stamps = _stamp(files + ([classes] if os.path.isfile(classes) else []))
    return _parsed(data_dir, stamps)


def _class_names(data_dir, records):
    path = os.path.join(data_dir, "classes.txt")
    listed = readers.read_class_names(path, "labelme")
    labels = {}
    for split_records in records.values():
        for record in split_records:
            for shape in record["shapes"]:
                if shape[0] not in (IGNORE, BACKGROUND):
                    labels.setdefault(shape[0], record["path"])
    if listed is None:
        names = sorted(labels)
    else:
        names = [n for n in listed if n not in (IGNORE, BACKGROUND)]
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise ValueError(
                f"labelme: {labels[unknown[0]]!r} has label {unknown[0]!r}, which {path!r} does "
                f"not list ({names}); expected one of its names (or add it there)."
            )
    if not names:
        raise ValueError(f"labelme: the files under {data_dir!r} have no labelled area "
                         "(polygon, rectangle, circle or mask shape).")
    return names


def _check_task(task):
    if task not in TASKS:
        raise ValueError(f"labelme: task must be one of {TASKS}, got {task!r}")


def labelme_info(data_dir=None, *, task="semantic", **_):
    """`DatasetInfo` of a labelme folder in the `task` view (module doc)."""
    _check_task(task)
    data_dir = _require_dir(data_dir)
    records = _records(data_dir)
    names = _class_names(data_dir, records)
    if task == "semantic":
        if len(names) + 1 > 255:
            raise ValueError(f"labelme: {len(names)} classes; the semantic view holds at most 254.")
        return DatasetInfo("semantic", len(names) + 1, ("background", *names),
                           splits=tuple(records))
    return DatasetInfo("instance", len(names), tuple(names),
                       category_ids=tuple(range(1, len(names) + 1)), splits=tuple(records))


def shape_to_mask(height, width, kind, points, mask_data=None) -> np.ndarray:
    """bool [H, W] of one shape, as labelme's `utils.shape_to_mask` draws it."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.zeros((height, width), np.uint8))
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(p) for p in points.tolist()]
    if kind == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif kind == "rectangle":
        (x1, y1), (x2, y2) = xy
        draw.rectangle([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], outline=1, fill=1)
    elif kind == "mask":
        import io

        mask = np.zeros((height, width), bool)
        (x1, y1), (x2, y2) = points.astype(int).tolist()
        with Image.open(io.BytesIO(base64.b64decode(mask_data))) as img:
            patch = np.asarray(img).astype(bool)
        region = mask[y1 : y2 + 1, x1 : x2 + 1]
        region[...] = patch[: region.shape[0], : region.shape[1]]
        return mask
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _read_image(record):
    kind, value = record["image"]
    if kind == "bytes":
        try:
            data = base64.b64decode(value, validate=False)
        except (ValueError, TypeError) as e:
            raise ValueError(f"labelme: the imageData of {record['path']!r} is not base64 "
                             f"({e}).") from e
        image = readers.read_image(data, name=f"{record['path']} (imageData)")
    else:
        image = readers.read_image(value)
    if record["size"] is not None and tuple(image.shape[:2]) != record["size"]:
        raise ValueError(
            f"labelme: the image of {record['path']!r} is {image.shape[1]}x{image.shape[0]} "
            f"(WxH) but the file says imageWidth x imageHeight = "
            f"{record['size'][1]}x{record['size'][0]}."
        )
    return image


def _semantic_element(record, index):
    image = _read_image(record)
    height, width = image.shape[:2]
    labels = np.zeros((height, width), np.uint8)
    for label, kind, points, _, mask_data in record["shapes"]:
        value = 255 if label == IGNORE else index.get(label, 0)
        labels[shape_to_mask(height, width, kind, points, mask_data)] = value
    return image, labels


def _instance_element(record, index):
    image = _read_image(record)
    height, width = image.shape[:2]
    groups = {}
    for i, (label, kind, points, group_id, mask_data) in enumerate(record["shapes"]):
        if label in (IGNORE, BACKGROUND):
            continue
        key = (label, group_id) if group_id is not None else (label, None, i)
        mask = shape_to_mask(height, width, kind, points, mask_data)
        groups[key] = groups[key] | mask if key in groups else mask
    keys = [k for k in groups if groups[k].any()]
    masks = np.stack([groups[k] for k in keys]).astype(np.uint8) if keys else np.zeros(
        (0, height, width), np.uint8)
    boxes = np.zeros((len(keys), 4), np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes[i] = [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
    classes = np.asarray([index[k[0]] for k in keys], np.int32).reshape(-1)
    return image, boxes, classes, masks, np.zeros(len(keys), bool)


def load_labelme(split, data_dir=None, *, task="semantic", validate=False, **_):
    """One split of a labelme folder in the `task` view (module doc); `validate=True`
    decodes every image up front (so those errors also raise from `load`)."""
    _check_task(task)
    info = labelme_info(data_dir, task=task)
    records = _records(_require_dir(data_dir))
    if split not in records:
        raise ValueError(f"labelme: no split {split!r} in {os.path.abspath(data_dir)!r}; "
                         f"expected one of {list(records)}.")
    records = records[split]
    names = info.class_names[1:] if task == "semantic" else info.class_names
    index = {name: k + 1 for k, name in enumerate(names)}
    if validate:
        for record in records:
            _read_image(record)
    if task == "semantic":
        stems = [os.path.splitext(os.path.basename(r["path"]))[0] for r in records]
        return elements.numpy_dataset(lambda i: _semantic_element(records[int(i)], index),
                                      stems, elements.SEMANTIC)
    return elements.numpy_dataset(lambda i: _instance_element(records[int(i)], index),
                                  np.arange(len(records), dtype=np.int64), INSTANCE_ELEMENT)


register_dataset(
    "labelme",
    loader=load_labelme,
    info=labelme_info,
    description="labelme JSON files (polygons, rectangles, circles); task=semantic|instance",
    tasks=TASKS,
)
