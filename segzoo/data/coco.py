"""`coco`: instance segmentation data in the COCO format (the 2017 release or your own).

    DIR/annotations/instances_{split}.json     COCO-format annotations
    DIR/{split}/FILE_NAME                      the images ("file_name" of the JSON;
                                               also found as DIR/FILE_NAME or
                                               DIR/images/FILE_NAME)

Splits are the `instances_*.json` files present: the COCO release's
`train2017` / `val2017`, the `train` / `val` of sets exported from CVAT, Label
Studio or Roboflow, or any other names. Training takes `train2017` and
`val2017` when those exist, else `train` and `val` (`segzoo.data.default_splits`);
a split that is not there raises a ValueError listing the annotation files
found. Images may be JPEG, PNG or TIFF of any bit depth (see
`segzoo.data.readers`). Category ids may be non-contiguous (COCO's 80 classes use ids
1..90): they are sorted and mapped to labels 1..K; `DatasetInfo.category_ids`
maps label k back to `category_ids[k - 1]` for evaluation, and class names come
from the JSON. Categories are read from the smallest annotation file and must
be the same in every split.

Segmentations: polygons (a list of [x1, y1, x2, y2, ...]) and RLE (compressed
or uncompressed counts), decoded with pycocotools. Crowd annotations
(`iscrowd: 1`) are kept with `is_crowd=True` (the training pipeline drops
them by default). Images without annotations are kept as negatives.

Checked at `load` (ValueError naming the JSON and the annotation/image):
an annotation whose image_id or category_id is not in the JSON, duplicate
image ids, an image file missing from DIR/{split}/, an RLE whose size differs
from its image. Repaired or skipped, with a warning that gives the counts:
boxes reaching outside the image are clipped to it; annotations whose clipped
box is empty (width or height <= 0) or whose segmentation has no polygon of
at least 3 points are skipped. An image whose decoded size differs from the
JSON's height/width raises ValueError when it is read.

Elements: {"image": uint8 [H, W, 3], "boxes": float32 [N, 4] xyxy pixels,
"classes": int32 [N] 1..K, "masks": uint8 [N, H, W], "is_crowd": bool [N],
"image_id": int64 (the COCO image id)}, in increasing image id.

Keypoints (`load("coco", split, DIR, keypoints=True)`, what keypoint models
train on): the annotations are read from `DIR/annotations/person_keypoints_
{split}.json` instead (COCO's person file: segmentations as above plus
`keypoints` per annotation). Any category with a `keypoints` list of names
works: K is its length (COCO person: 17) and its `skeleton` (1-based pairs)
becomes `DatasetInfo.skeleton` (0-based); categories with keypoint lists must
all have the same list. Elements gain "keypoints": float32 [N, K, 3], the
annotation's flat [x1, y1, v1, ...] list as (x, y, v) rows (x, y pixels as
written, v = 0 unlabelled / 1 labelled hidden / 2 visible); annotations
without keypoints (or of a category without a list) get zeros. Images without
annotations stay negatives.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import numpy as np
import tensorflow as tf

from segzoo.data import elements, keypoints, readers
from segzoo.data.registry import DatasetInfo, register_dataset

# read_record's outputs, in its order: the instance element plus COCO's crowd flags.
COCO_ELEMENT = {**elements.INSTANCE, "is_crowd": tf.TensorSpec([None], tf.bool)}


_PREFIXES = {False: "instances", True: "person_keypoints"}


def _require_dir(data_dir):
    data_dir = readers.require_data_dir(
        "coco", data_dir, "annotations/instances_{split}.json and {split}/ image folders"
    )
    if not os.path.isdir(os.path.join(data_dir, "annotations")):
        raise ValueError(
            f"coco: {os.path.join(data_dir, 'annotations')!r} is not a directory; expected "
            "the COCO layout DIR/annotations/instances_{split}.json + DIR/{split}/."
        )
    return data_dir


def coco_splits(data_dir, prefix="instances") -> tuple[str, ...]:
    """Split names of the `annotations/{prefix}_{split}.json` files in `data_dir`
    (`prefix` "instances", or "person_keypoints" for keypoints)."""
    files = os.listdir(os.path.join(_require_dir(data_dir), "annotations"))
    start = f"{prefix}_"
    return tuple(
        sorted(f[len(start) : -5] for f in files if f.startswith(start) and f.endswith(".json"))
    )


def _annotation_files(data_dir):
    """The JSON files of DIR/annotations/, for error messages."""
    directory = os.path.join(data_dir, "annotations")
    return sorted(f for f in os.listdir(directory) if f.lower().endswith(".json")) or "none"


def _check_split(data_dir, split, splits, prefix="instances"):
    if split not in splits:
        missing = os.path.join(data_dir, "annotations", f"{prefix}_{split}.json")
        raise ValueError(
            f"coco: no split {split!r}: {missing!r} does not exist. Annotation files found in "
            f"{os.path.join(data_dir, 'annotations')!r}: {_annotation_files(data_dir)}; expected "
            f"{prefix}_{{split}}.json for each split used (available: {list(splits)})."
        )


def _read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"coco: cannot read {path!r} ({type(e).__name__}: {e}).") from e
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"coco: {path!r} has no {key!r} list; expected a COCO instances file.")
    return data


def _categories(data, path):
    categories = sorted(data["categories"], key=lambda c: int(c["id"]))
    ids = [int(c["id"]) for c in categories]
    if len(set(ids)) != len(ids) or not ids:
        raise ValueError(f"coco: {path!r} has duplicate or no category ids: {ids}.")
    return tuple(ids), tuple(str(c.get("name", c["id"])) for c in categories)


def keypoint_categories(data, path):
    """(names tuple [K], skeleton tuple of 0-based pairs) of the categories with a
    `keypoints` list (module doc).

    Raises:
        ValueError: no category has a keypoints list, or two lists differ.
    """
    lists = [c for c in data["categories"] if isinstance(c.get("keypoints"), list)]
    if not lists or not lists[0]["keypoints"]:
        raise ValueError(
            f"coco: no category of {path!r} has a 'keypoints' list of names; expected a COCO "
            "person_keypoints file (categories with 'keypoints' and 'skeleton')."
        )
    names = tuple(str(n) for n in lists[0]["keypoints"])
    for category in lists[1:]:
        if tuple(str(n) for n in category["keypoints"]) != names:
            raise ValueError(
                f"coco: categories {lists[0].get('id')} and {category.get('id')} of {path!r} "
                f"have different keypoint lists; expected one list of names for all."
            )
    pairs = [(int(a) - 1, int(b) - 1) for a, b in lists[0].get("skeleton") or ()]
    skeleton = keypoints.check_skeleton(pairs, len(names), f"coco: {path!r} (1-based)")
    return names, skeleton


@functools.lru_cache(maxsize=8)
def _categories_of_file(path, _stamp, with_keypoints=False):
    data = _read_json(path)
    ids, names = _categories(data, path)
    return ids, names, (keypoint_categories(data, path) if with_keypoints else (None, ()))


def coco_info(data_dir=None, *, keypoints=False, **_):
    """`DatasetInfo` with the categories of the smallest annotation file (module doc);
    with `keypoints=True` of the person_keypoints files, with keypoint names and skeleton."""
    data_dir = _require_dir(data_dir)
    prefix = _PREFIXES[bool(keypoints)]
    splits = coco_splits(data_dir, prefix)
    if not splits:
        raise ValueError(
            f"coco: no annotations/{prefix}_{{split}}.json files in {data_dir!r} (found: "
            f"{_annotation_files(data_dir)}); expected e.g. annotations/{prefix}_train.json "
            f"and annotations/{prefix}_val.json."
        )
    paths = [os.path.join(data_dir, "annotations", f"{prefix}_{s}.json") for s in splits]
    path = min(paths, key=os.path.getsize)
    stat = os.stat(path)
    ids, names, (keypoint_names, skeleton) = _categories_of_file(
        path, (stat.st_mtime_ns, stat.st_size), bool(keypoints)
    )
    return DatasetInfo(
        "instance", len(ids), names, category_ids=ids, splits=splits,
        keypoint_names=keypoint_names, skeleton=skeleton,
    )  # fmt: skip


def _polygons(segmentation):
    """Polygons with at least 3 points (6 coordinates)."""
    return [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]


def _keypoints(ann, path, num_keypoints):
    """float32 [K, 3] (x, y, v) of an annotation's flat keypoint list (zeros if none)."""
    values = ann.get("keypoints")
    if not values:
        return np.zeros((num_keypoints, 3), np.float32)
    if len(values) != 3 * num_keypoints:
        raise ValueError(
            f"coco: annotation {ann.get('id')} in {path!r} has {len(values)} keypoint values; "
            f"expected 3 x {num_keypoints} (x, y, v per keypoint of its category)."
        )
    points = np.asarray(values, np.float32).reshape(num_keypoints, 3)
    if not np.isin(points[:, 2], (0, 1, 2)).all():
        raise ValueError(
            f"coco: annotation {ann.get('id')} in {path!r} has keypoint visibilities "
            f"{sorted(set(points[:, 2].tolist()))}; expected 0, 1 or 2."
        )
    return points


def index_annotations(data, path, image_dir, category_ids, num_keypoints=None):
    """Per-image records from a parsed COCO JSON (checks and repairs of the module doc).

    Returns:
        list (sorted by image id) of dicts: id, file, height, width, and the
        image's annotations (box xyxy, label 1..K, crowd flag, segmentation,
        and with `num_keypoints` K the keypoints float32 [K, 3]).
    """
    label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
    images = {}
    for image in data["images"]:
        image_id = int(image["id"])
        if image_id in images:
            raise ValueError(f"coco: image id {image_id} appears twice in {path!r}.")
        file = os.path.join(image_dir, image["file_name"])
        images[image_id] = {
            "id": image_id,
            "file": file,
            "height": int(image["height"]),
            "width": int(image["width"]),
            "annotations": [],
        }
    clipped = degenerate = empty = 0
    for ann in data["annotations"]:
        image = images.get(int(ann["image_id"]))
        if image is None:
            raise ValueError(
                f"coco: annotation {ann.get('id')} in {path!r} points to image_id "
                f"{ann['image_id']}, which is not in its 'images'; expected an existing image id."
            )
        label = label_of.get(int(ann["category_id"]))
        if label is None:
            raise ValueError(
                f"coco: annotation {ann.get('id')} in {path!r} has category_id "
                f"{ann['category_id']}; expected one of {list(category_ids)}."
            )
        x, y, w, h = (float(v) for v in ann["bbox"])
        height, width = image["height"], image["width"]
        box = [min(max(x, 0.0), width), min(max(y, 0.0), height)]
        box += [min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)]
        if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
            degenerate += 1
            continue
        clipped += box != [x, y, x + w, y + h]
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, list):
            segmentation = _polygons(segmentation)
            if not segmentation:
                empty += 1
                continue
        elif isinstance(segmentation, dict):
            if [int(v) for v in segmentation.get("size", [])] != [height, width]:
                raise ValueError(
                    f"coco: annotation {ann.get('id')} in {path!r} has an RLE of size "
                    f"{segmentation.get('size')} for image {image['id']} of size "
                    f"{[height, width]}; expected [height, width] of the image."
                )
        else:
            empty += 1
            continue
        record = {
            "box": box,
            "label": label,
            "crowd": bool(ann.get("iscrowd", 0)),
            "segmentation": segmentation,
        }
        if num_keypoints is not None:
            record["keypoints"] = _keypoints(ann, path, num_keypoints)
        image["annotations"].append(record)
    if clipped or degenerate or empty:
        warnings.warn(
            f"coco: {path}: clipped {clipped} box(es) to their image; skipped {degenerate} "
            f"annotation(s) with an empty box and {empty} with no polygon of >= 3 points.",
            stacklevel=4,  # the caller of segzoo.data.load
        )
    return [images[i] for i in sorted(images)]


def decode_masks(annotations, height, width) -> np.ndarray:
    """uint8 [N, H, W] masks of polygon / RLE segmentations (pycocotools)."""
    from pycocotools import mask as mask_utils

    masks = np.zeros((len(annotations), height, width), np.uint8)
    for i, ann in enumerate(annotations):
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        masks[i] = mask_utils.decode(rle)
    return masks


def read_record(record, num_keypoints=None):
    """(image, boxes, classes, masks, is_crowd[, keypoints [N, K, 3]]) numpy arrays of one
    image record (keypoints with `num_keypoints` K)."""
    image = readers.read_image(record["file"])
    if image.shape[:2] != (record["height"], record["width"]):
        raise ValueError(
            f"coco: image {record['file']!r} is {image.shape[1]}x{image.shape[0]} (WxH) but "
            f"its JSON entry says {record['width']}x{record['height']}."
        )
    anns = record["annotations"]
    boxes = np.asarray([a["box"] for a in anns], np.float32).reshape(-1, 4)
    classes = np.asarray([a["label"] for a in anns], np.int32)
    crowd = np.asarray([a["crowd"] for a in anns], bool)
    outputs = (image, boxes, classes, decode_masks(anns, *image.shape[:2]), crowd)
    if num_keypoints is None:
        return outputs
    points = np.asarray([a["keypoints"] for a in anns], np.float32)
    return (*outputs, points.reshape(len(anns), num_keypoints, 3))


def _find_image(file, image_dir, data_dir):
    """DIR/{split}/FILE_NAME, else DIR/FILE_NAME, else DIR/images/FILE_NAME; None if none."""
    relative = os.path.relpath(file, image_dir)
    for candidate in (file, os.path.join(data_dir, relative),
                      os.path.join(data_dir, "images", relative)):
        if os.path.isfile(candidate):
            return candidate
    return None


def load_coco(split, data_dir=None, *, keypoints=False, **_):
    """One split of a COCO-layout dataset (module doc); `keypoints=True` reads the
    person_keypoints files and adds "keypoints" to the elements."""
    info = coco_info(data_dir, keypoints=keypoints)
    data_dir = _require_dir(data_dir)
    prefix = _PREFIXES[bool(keypoints)]
    _check_split(data_dir, split, info.splits, prefix)
    path = os.path.join(data_dir, "annotations", f"{prefix}_{split}.json")
    data = _read_json(path)
    ids, _ = _categories(data, path)
    if ids != info.category_ids:
        raise ValueError(
            f"coco: the categories of {path!r} ({list(ids)}) differ from the other splits' "
            f"({list(info.category_ids)}); expected the same categories in every split."
        )
    num_keypoints = None
    if keypoints:
        names, _ = keypoint_categories(data, path)
        if names != info.keypoint_names:
            raise ValueError(
                f"coco: the keypoints of {path!r} ({list(names)}) differ from the other "
                f"splits' ({list(info.keypoint_names)}); expected the same in every split."
            )
        num_keypoints = len(names)
    image_dir = os.path.join(data_dir, split)
    records = index_annotations(data, path, image_dir, ids, num_keypoints)
    del data
    if not records:
        raise ValueError(f"coco: {path!r} lists no images; expected a non-empty split.")
    missing = []
    for record in records:
        file = _find_image(record["file"], image_dir, data_dir)
        if file is None:
            missing.append(record["file"])
        record["file"] = file
    if missing:
        raise ValueError(
            f"coco: {len(missing)} image file(s) of {path!r} are missing, e.g. {missing[0]!r}; "
            f"expected the images of split {split!r} in {image_dir!r}."
        )

    def read(index):
        return read_record(records[int(index)], num_keypoints)

    image_ids = np.asarray([r["id"] for r in records], np.int64)
    spec = COCO_ELEMENT if num_keypoints is None else elements.with_keypoints(COCO_ELEMENT, num_keypoints)
    return elements.numpy_dataset(read, image_ids, spec)


register_dataset(
    "coco",
    loader=load_coco,
    info=coco_info,
    description="COCO-format instances: DIR/annotations/instances_{split}.json + DIR/{split}/ "
    "(keypoints=True: person_keypoints_{split}.json)",
)
