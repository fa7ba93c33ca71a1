"""`folder`: your own semantic segmentation data as plain files.

Layout::

    DIR/classes.txt                  optional: one class name a line, line i = class i
    DIR/{split}/images/NAME.jpg      (or .jpeg / .png / .bmp / .tif / .tiff) RGB or
                                     grayscale images of any bit depth (16-bit and
                                     single-channel images are percentile-normalised:
                                     the input rule of `segzoo.data.readers`)
    DIR/{split}/masks/NAME.png       class ids, 255 = ignore; palette PNGs give their
                                     palette indices, grayscale PNGs their values

Splits are the sub-directories of DIR that hold an `images/` folder.
The number of classes is, in order of precedence: the `num_classes=` keyword,
the number of lines of `classes.txt`, or the largest label found in the masks
of every split plus one (255 excluded). Class names come from `classes.txt`
when present, else "class_0", "class_1", ...

Checked when `load` is called (ValueError naming the file): missing split,
empty split, an image without a mask or a mask without an image, a mask whose
size differs from its image (read from the file headers). Checked as each
element is read (the ValueError surfaces from the iterator as a
`tf.errors.InvalidArgumentError` carrying the same message): undecodable
files and labels outside [0, num_classes) other than 255. `validate=True`
decodes everything up front instead, so those also raise `ValueError` from
`load`.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from segzoo.data import elements, readers
from segzoo.data.registry import IGNORE_LABEL, DatasetInfo, register_dataset

IMAGE_EXTENSIONS = readers.IMAGE_EXTENSIONS


def _require_dir(data_dir):
    return readers.require_data_dir(
        "folder", data_dir, "{split}/images/NAME.jpg|png and {split}/masks/NAME.png"
    )


def folder_splits(data_dir) -> tuple[str, ...]:
    """Sub-directories of `data_dir` that hold an `images/` folder."""
    data_dir = _require_dir(data_dir)
    return tuple(
        sorted(
            d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d, "images"))
        )
    )


def list_pairs(data_dir, split) -> list[tuple[str, str, str]]:
    """(name, image_path, mask_path) of a split, sorted by name; checks pairing and sizes."""
    data_dir = _require_dir(data_dir)
    image_dir = os.path.join(data_dir, split, "images")
    mask_dir = os.path.join(data_dir, split, "masks")
    if not os.path.isdir(image_dir):
        raise ValueError(
            f"folder: split {split!r} not found: {image_dir!r} is not a directory; "
            f"available splits: {folder_splits(data_dir)}."
        )
    if not os.path.isdir(mask_dir):
        raise ValueError(f"folder: {mask_dir!r} is missing; expected the masks of split {split!r}.")
    images = readers.files_by_stem(image_dir, IMAGE_EXTENSIONS, "folder", "images")
    masks = {
        os.path.splitext(f)[0]: os.path.join(mask_dir, f)
        for f in os.listdir(mask_dir)
        if f.lower().endswith(".png")
    }
    if not images:
        raise ValueError(
            f"folder: split {split!r} is empty: no {'/'.join(IMAGE_EXTENSIONS)} files in "
            f"{image_dir!r}."
        )
    pairs = []
    for stem in readers.paired_stems("folder", split, images, masks, image_dir, mask_dir,
                                     ".png", "jpg|png|tif"):
        pairs.append((stem, images[stem], masks[stem]))
    return pairs


def _read_class_names(data_dir):
    path = os.path.join(data_dir, "classes.txt")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"folder: {path!r} is empty; expected one class name per line.")
    return names


@functools.lru_cache(maxsize=16)
def _inferred_num_classes(data_dir, _mtime):
    largest = -1
    for split in folder_splits(data_dir):
        for _, _, mask_path in list_pairs(data_dir, split):
            values = np.unique(readers.read_label_png(mask_path))
            values = values[values != IGNORE_LABEL]
            if values.size:
                largest = max(largest, int(values.max()))
    if largest < 0:
        raise ValueError(
            f"folder: cannot infer num_classes: the masks under {data_dir!r} contain only "
            "255; pass num_classes= or write classes.txt."
        )
    return largest + 1


@functools.lru_cache(maxsize=16)
def _image_channels(data_dir, _mtime):
    """1 when every image of every split is single-channel (file headers), else 3."""
    for split in folder_splits(data_dir):
        for _, image_path, _ in list_pairs(data_dir, split):
            if readers.image_header(image_path).channels != 1:
                return 3
    return 1


def folder_info(data_dir=None, *, num_classes=None, **_):
    """`DatasetInfo` of a folder dataset (see the module doc for num_classes / names)."""
    data_dir = _require_dir(data_dir)
    names = _read_class_names(data_dir)
    if num_classes is None:
        if names is not None:
            num_classes = len(names)
        else:
            num_classes = _inferred_num_classes(data_dir, os.stat(data_dir).st_mtime_ns)
    num_classes = int(num_classes)
    if not 1 <= num_classes <= 255:
        raise ValueError(f"folder: num_classes must be in [1, 255], got {num_classes}")
    if names is None:
        names = [f"class_{i}" for i in range(num_classes)]
    elif len(names) != num_classes:
        raise ValueError(
            f"folder: {os.path.join(data_dir, 'classes.txt')!r} lists {len(names)} classes but "
            f"num_classes={num_classes}; expected one name per class."
        )
    return DatasetInfo("semantic", num_classes, tuple(names), splits=folder_splits(data_dir),
                       image_channels=_image_channels(data_dir, os.stat(data_dir).st_mtime_ns))


def _read_element(image_path, mask_path, num_classes):
    image = readers.read_image(image_path)
    mask = readers.read_label_png(mask_path)
    readers.check_same_size(image, mask, image_path, mask_path)
    readers.check_labels(mask, num_classes, mask_path)
    return image, mask


def load_folder(split, data_dir=None, *, num_classes=None, validate=False, **_):
    """One split of a folder dataset: {"image", "mask", "image_id" (file stem)}."""
    info = folder_info(data_dir, num_classes=num_classes)
    pairs = list_pairs(data_dir, split)
    k = info.num_classes
    if validate:
        for _, image_path, mask_path in pairs:
            _read_element(image_path, mask_path, k)

    def read(index):
        _, image_path, mask_path = pairs[int(index)]
        return _read_element(image_path, mask_path, k)

    return elements.numpy_dataset(read, [p[0] for p in pairs], elements.SEMANTIC)


register_dataset(
    "folder",
    loader=load_folder,
    info=folder_info,
    description="DIR/{split}/images/*.jpg|png + DIR/{split}/masks/*.png (class ids, 255 ignore)",
)
