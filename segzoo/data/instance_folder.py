"""`instance_folder`: your own instance segmentation data as instance-id images.

The layout of DSB2018 / cellpose / StarDist style sets and many industrial ones::

    DIR/classes.txt                    optional: class names, one a line (default: one
                                       class, "object")
    DIR/{split}/images/NAME.png        the images: .png .jpg .jpeg .tif .tiff .bmp, any
                                       bit depth (see `segzoo.data.readers`)
    DIR/{split}/masks/NAME.png         instance ids: 0 = background, every other value
                                       one instance (any values, not necessarily
                                       contiguous; 8- or 16-bit PNG, or TIFF)
    DIR/{split}/classes/NAME.json      optional: {"<instance id>": "<class name>", ...}

Splits are the sub-directories of DIR holding `images/` and `masks/`. With one
class, every instance is of it. With several (classes.txt with several lines,
or no classes.txt and class names found in the JSON files, sorted), each
image needs its `classes/NAME.json` naming the class of each of its ids.
Labels are 1..K in the order of the class names; `category_ids` are 1..K.

Elements: {"image": uint8 [H, W, 3], "boxes": float32 [N, 4] xyxy pixels
(pixel edges: x2 = last column + 1), "classes": int32 [N], "masks": uint8
[N, H, W], "is_crowd": bool [N] (all False), "image_id": int64 (the index of
NAME in the sorted split)}, instances in increasing id order; N may be 0.

Checked when `load` is called (ValueError naming the file): missing or empty
split, an image without a mask or a mask without an image, two files of one
name, sizes that differ (file headers), unreadable or malformed class JSONs
and class names not in classes.txt. Checked as each element is read (the
fit loop reports them as the same one-line error): undecodable files,
colour or non-integer masks, and mask ids the class JSON does not name.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import tensorflow as tf

from segzoo.data import elements, readers
from segzoo.data.registry import DatasetInfo, register_dataset

MASK_EXTENSIONS = (".png", ".tif", ".tiff")
DEFAULT_CLASS = "object"
# read_record's outputs: the instance element plus crowd flags (all False).
ELEMENT = {**elements.INSTANCE, "is_crowd": tf.TensorSpec([None], tf.bool)}


def _require_dir(data_dir):
    return readers.require_data_dir(
        "instance_folder", data_dir,
        "{split}/images/NAME.png|jpg|tif and {split}/masks/NAME.png|tif (instance ids)",
    )


def instance_folder_splits(data_dir) -> tuple[str, ...]:
    """Sub-directories of `data_dir` holding `images/` and `masks/`."""
    data_dir = _require_dir(data_dir)
    return tuple(sorted(
        d for d in os.listdir(data_dir)
        if os.path.isdir(os.path.join(data_dir, d, "images"))
        and os.path.isdir(os.path.join(data_dir, d, "masks"))
    ))


def list_items(data_dir, split) -> list[tuple[str, str, str, str | None]]:
    """(name, image, mask, class JSON or None) of a split, sorted by name; checks pairing."""
    data_dir = _require_dir(data_dir)
    base = os.path.join(data_dir, split)
    image_dir, mask_dir = os.path.join(base, "images"), os.path.join(base, "masks")
    if not os.path.isdir(image_dir) or not os.path.isdir(mask_dir):
        raise ValueError(
            f"instance_folder: split {split!r} not found: {base!r} needs images/ and masks/; "
            f"available splits: {instance_folder_splits(data_dir)}."
        )
    images = readers.files_by_stem(image_dir, readers.IMAGE_EXTENSIONS, "instance_folder", "images")
    masks = readers.files_by_stem(mask_dir, MASK_EXTENSIONS, "instance_folder", "masks")
    if not images:
        raise ValueError(f"instance_folder: split {split!r} is empty: no "
                         f"{'/'.join(readers.IMAGE_EXTENSIONS)} files in {image_dir!r}.")
    class_dir = os.path.join(base, "classes")
    items = []
    for stem in readers.paired_stems("instance_folder", split, images, masks, image_dir, mask_dir,
                                     ".png|tif", "png|jpg|tif"):
        json_path = os.path.join(class_dir, stem + ".json")
        items.append((stem, images[stem], masks[stem],
                      json_path if os.path.isfile(json_path) else None))
    return items


def read_class_map(path) -> dict[int, str]:
    """{instance id: class name} of a classes/NAME.json."""
    data = readers.read_json(path, "instance_folder")
    if not isinstance(data, dict):
        raise ValueError(f"instance_folder: {path!r} holds a {type(data).__name__}; expected "
                         'an object mapping instance ids to class names, e.g. {"1": "cell"}.')
    mapping = {}
    for key, name in data.items():
        try:
            instance_id = int(key)
        except ValueError:
            instance_id = -1
        if instance_id < 1 or not isinstance(name, str) or not name:
            raise ValueError(
                f"instance_folder: {path!r} maps {key!r} to {name!r}; expected positive "
                'instance ids mapped to class names, e.g. {"1": "cell", "2": "nucleus"}.'
            )
        mapping[instance_id] = name
    return mapping


@functools.lru_cache(maxsize=8)
def _class_names(data_dir, _stamp):
    listed = readers.read_class_names(os.path.join(data_dir, "classes.txt"), "instance_folder")
    found = {}
    for split in instance_folder_splits(data_dir):
        class_dir = os.path.join(data_dir, split, "classes")
        if not os.path.isdir(class_dir):
            continue
        for filename in sorted(os.listdir(class_dir)):
            if filename.lower().endswith(".json"):
                path = os.path.join(class_dir, filename)
                for name in read_class_map(path).values():
                    found.setdefault(name, path)
    if listed is None:
        return tuple(sorted(found)) or (DEFAULT_CLASS,)
    unknown = sorted(set(found) - set(listed))
    if unknown:
        raise ValueError(
            f"instance_folder: {found[unknown[0]]!r} names class {unknown[0]!r}, which "
            f"{os.path.join(data_dir, 'classes.txt')!r} does not list ({listed}); expected "
            "one of its names."
        )
    return tuple(listed)


def _stamp(data_dir):
    """Modification times of classes.txt and every class JSON (the cache key of the names)."""
    paths = [os.path.join(data_dir, "classes.txt")]
    for split in instance_folder_splits(data_dir):
        class_dir = os.path.join(data_dir, split, "classes")
        if os.path.isdir(class_dir):
            paths += [os.path.join(class_dir, f) for f in sorted(os.listdir(class_dir))]
    return tuple((p, os.stat(p).st_mtime_ns) for p in paths if os.path.exists(p))


def instance_folder_info(data_dir=None, **_):
    """`DatasetInfo` of an instance folder (module doc)."""
    data_dir = _require_dir(data_dir)
    splits = instance_folder_splits(data_dir)
    if not splits:
        raise ValueError(
            f"instance_folder: no split in {data_dir!r}; expected {{split}}/images/ and "
            "{split}/masks/ sub-directories (e.g. train/images, train/masks)."
        )
    names = _class_names(data_dir, _stamp(data_dir))
    return DatasetInfo("instance", len(names), names,
                       category_ids=tuple(range(1, len(names) + 1)), splits=splits)


def instances_of_ids(ids, label_of=None):
    """Instance arrays of an instance-id map int [H, W].

    Args:
        ids: 0 = background, other values instances.
        label_of: callable id -> label 1..K (default: every instance label 1).

    Returns:
        (boxes float32 [N, 4] xyxy pixel edges, classes int32 [N], masks uint8
        [N, H, W]) in increasing id order.
    """
    values = np.unique(ids)
    values = values[values != 0]
    masks = (ids[None] == values[:, None, None]).astype(np.uint8)
    boxes = np.zeros((len(values), 4), np.float32)
    for i, mask in enumerate(masks):
        ys = np.flatnonzero(mask.any(axis=1))
        xs = np.flatnonzero(mask.any(axis=0))
        boxes[i] = [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
    labels = [1 if label_of is None else label_of(int(v)) for v in values]
    return boxes, np.asarray(labels, np.int32).reshape(-1), masks


def _read_item(item, class_names):
    _, image_path, mask_path, json_path = item
    image = readers.read_image(image_path)
    ids = readers.read_instance_ids(mask_path)
    readers.check_same_size(image, ids, image_path, mask_path)
    label_of = None
    if json_path is not None or len(class_names) > 1:
        if json_path is None:
            split_dir = os.path.dirname(os.path.dirname(mask_path))
            stem = os.path.splitext(os.path.basename(mask_path))[0]
            raise ValueError(
                f"instance_folder: {mask_path!r} has no class file; with {len(class_names)} "
                f"classes ({list(class_names)}) every mask needs "
                f"{os.path.join(split_dir, 'classes', stem + '.json')!r}."
            )
        mapping = read_class_map(json_path)
        index = {name: k + 1 for k, name in enumerate(class_names)}

        def label_of(instance_id):
            if instance_id not in mapping:
                raise ValueError(
                    f"instance_folder: {mask_path!r} holds instance id {instance_id}, which "
                    f"{json_path!r} does not name; expected a class for every id in the mask "
                    f"(it names {sorted(mapping)})."
                )
            return index[mapping[instance_id]]

    boxes, classes, masks = instances_of_ids(ids, label_of)
    return image, boxes, classes, masks, np.zeros(len(classes), bool)


def load_instance_folder(split, data_dir=None, *, validate=False, **_):
    """One split of an instance folder (module doc)."""
    info = instance_folder_info(data_dir)
    items = list_items(data_dir, split)
    if validate:
        for item in items:
            _read_item(item, info.class_names)

    def read(index):
        return _read_item(items[int(index)], info.class_names)

    return elements.numpy_dataset(read, np.arange(len(items), dtype=np.int64), ELEMENT)


register_dataset(
    "instance_folder",
    loader=load_instance_folder,
    info=instance_folder_info,
    description="DIR/{split}/images/* + DIR/{split}/masks/* (instance ids, 0 = background)",
)
