"""`voc_instance`: Pascal VOC 2012 instance segmentation (SegmentationObject).

Same files and data directory as `segzoo.data.voc` (a tensorflow-datasets
builder, prepared once into `DIR/segzoo_tfds/`); splits train / val / trainval
from `ImageSets/Segmentation`.

For each image, the instances are the values 1..N of its SegmentationObject
PNG (palette indices); the class of an instance is the SegmentationClass
label under its pixels (they must agree: several labels, background or 255
under an instance raise `ValueError` naming the file). 255 (void borders) is
excluded from every mask. Boxes are the masks' extents in pixel-edge
coordinates: [x_min, y_min, x_max + 1, y_max + 1]. Images with no object are
kept (N = 0). Elements: {"image": uint8 [H, W, 3], "boxes": float32 [N, 4],
"classes": int32 [N] in 1..20, "masks": uint8 [N, H, W], "is_crowd": bool [N]
(all False), "image_id": int64 (the name's digits: "2007_000032" ->
2007000032)}. Class names are VOC's 20 foreground classes, category ids 1..20.
"""

from __future__ import annotations

import os
import re
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from segzoo.data import readers
from segzoo.data.registry import IGNORE_LABEL, DatasetInfo, check_split, register_dataset
from segzoo.data.voc import (
    SEGMENTATION_SPLITS,
    VOC_CLASSES,
    VocBuilderBase,
    image_feature_value,
    prepared_builder,
    read_voc_label,
)


def numeric_image_id(name: str) -> int:
    """int64 id of a VOC name: its digits ("2007_000032" -> 2007000032), else a CRC32."""
    digits = re.sub(r"\D", "", name)
    if digits and len(digits) <= 18:
        return int(digits)
    return zlib.crc32(name.encode())


def objects_and_classes(object_map, class_map, object_path):
    """Renumber instances to 1..N (255 kept) and find each one's class.

    Returns:
        (object map uint8 [H, W] with values 0, 1..N, 255; classes int32 [N]).
    """
    ids = [int(v) for v in np.unique(object_map) if v not in (0, IGNORE_LABEL)]
    renumbered = np.where(object_map == IGNORE_LABEL, IGNORE_LABEL, 0).astype(np.uint8)
    classes = []
    for new_id, old_id in enumerate(ids, start=1):
        where = object_map == old_id
        labels = np.unique(class_map[where])
        if len(labels) != 1 or labels[0] in (0, IGNORE_LABEL):
            raise ValueError(
                f"Instance {old_id} of {os.fspath(object_path)!r} covers SegmentationClass "
                f"labels {labels.tolist()}; expected exactly one class in 1..20."
            )
        renumbered[where] = new_id
        classes.append(int(labels[0]))
    return renumbered, np.asarray(classes, np.int32)


class SegzooVoc2012Instance(VocBuilderBase):
    """Pascal VOC 2012 SegmentationObject instances; see `segzoo.data.voc_instance`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Instances from SegmentationObject + SegmentationClass."}

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "objects": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "classes": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "image_id": tfds.features.Scalar(dtype=np.int64),
                    "name": tfds.features.Text(),
                }
            ),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        )

    def _split_generators(self, dl_manager):
        root = self._voc_root(dl_manager)
        lists = os.path.join(root, "ImageSets", "Segmentation")
        splits = {}
        for split in SEGMENTATION_SPLITS:
            path = os.path.join(lists, split + ".txt")
            if split == "trainval" and not os.path.isfile(path):
                names = sorted(
                    set(readers.read_split_list(os.path.join(lists, "train.txt")))
                    | set(readers.read_split_list(os.path.join(lists, "val.txt")))
                )
            else:
                names = readers.read_split_list(path)
            splits[split] = self._generate_examples(root, names)
        return splits

    def _generate_examples(self, root, names):
        for name in names:
            image_path = os.path.join(root, "JPEGImages", name + ".jpg")
            class_path = os.path.join(root, "SegmentationClass", name + ".png")
            object_path = os.path.join(root, "SegmentationObject", name + ".png")
            image, hw = image_feature_value(image_path)
            class_map = read_voc_label(class_path, len(VOC_CLASSES), hw, image_path)
            object_map = read_voc_label(object_path, 256, hw, image_path)
            objects, classes = objects_and_classes(object_map, class_map, object_path)
            yield (
                name,
                {
                    "image": image,
                    "objects": objects[..., None],
                    "classes": classes,
                    "image_id": numeric_image_id(name),
                    "name": name,
                },
            )


def boxes_from_masks(masks):
    """Boxes float32 [N, 4] xyxy pixel edges of non-empty masks uint8 [N, H, W] (TF)."""
    rows = tf.reduce_any(masks > 0, axis=2)  # [N, H]
    cols = tf.reduce_any(masks > 0, axis=1)  # [N, W]
    height, width = tf.shape(rows)[1], tf.shape(cols)[1]
    y1 = tf.argmax(tf.cast(rows, tf.int32), axis=1, output_type=tf.int32)
    y2 = height - tf.argmax(tf.cast(rows[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    x1 = tf.argmax(tf.cast(cols, tf.int32), axis=1, output_type=tf.int32)
    x2 = width - tf.argmax(tf.cast(cols[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
    return tf.cast(tf.stack([x1, y1, x2, y2], axis=1), tf.float32)


def load_voc_instance(split, data_dir=None, *, download=True, **_):
    """One split of VOC 2012 instances (module doc)."""
    check_split("voc_instance", split, SEGMENTATION_SPLITS)
    builder = prepared_builder(SegzooVoc2012Instance, data_dir, download)
    ds = builder.as_dataset(split=split, shuffle_files=False)

    def to_element(example):
        objects = example["objects"][..., 0]
        classes = tf.cast(example["classes"], tf.int32)
        ids = tf.range(1, tf.shape(classes)[0] + 1, dtype=tf.int32)
        masks = tf.cast(tf.equal(tf.cast(objects, tf.int32)[None], ids[:, None, None]), tf.uint8)
        return {
            "image": example["image"],
            "boxes": boxes_from_masks(masks),
            "classes": classes,
            "masks": masks,
            "is_crowd": tf.zeros_like(classes, tf.bool),
            "image_id": example["image_id"],
        }

    return ds.map(to_element, num_parallel_calls=tf.data.AUTOTUNE)


def voc_instance_info(data_dir=None, **_):
    """`DatasetInfo` of VOC instances: K = 20, category ids 1..20."""
    return DatasetInfo(
        "instance",
        len(VOC_CLASSES) - 1,
        VOC_CLASSES[1:],
        category_ids=tuple(range(1, len(VOC_CLASSES))),
        splits=SEGMENTATION_SPLITS,
    )


register_dataset(
    "voc_instance",
    loader=load_voc_instance,
    info=voc_instance_info,
    description="Pascal VOC 2012 SegmentationObject instances (tfds)",
)
