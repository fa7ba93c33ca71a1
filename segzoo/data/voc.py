"""`voc`: Pascal VOC 2012 segmentation as a tensorflow-datasets builder.

The data directory (`--data-dir DIR`) is the builder's manual directory::

    DIR/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}
      or DIR/VOCtrainval_11-May-2012.tar          (extracted on first use)
    DIR/benchmark_RELEASE/dataset/  or DIR/benchmark.tgz     (SBD, only for train_aug)

When neither is there and `download=True` (default) the files are downloaded
from their official addresses; offline, a `ValueError` says which directory or
archive to put where. The first `load` prepares TFRecords under
`DIR/segzoo_tfds/` (decoding and checking every file once); later loads read
them directly. Delete that folder to re-prepare after changing the files.

Splits: `train` (1,464), `val` (1,449), `trainval` — exactly the names in
`ImageSets/Segmentation/{split}.txt`, no other images — and `train_aug`
(10,582 = SBD train + SBD val + VOC train - VOC val, see `segzoo.data.sbd`);
for an image in both, train_aug uses VOC's own PNG (finer, with 255 borders),
else SBD's `.mat`.

Labels are the palette *indices* of the SegmentationClass PNGs (never their
RGB colours): 0 background, 1..20 the classes of `VOC_CLASSES`, 255 the void
borders (kept; ignored by losses and metrics). Grayscale JPEGs become RGB.
Elements: {"image": uint8 [H, W, 3], "mask": uint8 [H, W], "image_id": name}.

Bad files (undecodable image, missing mask, mask/image size mismatch, label
outside [0, 21) other than 255, empty split list) raise `ValueError` naming
the file and what was expected, while preparing.
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from segzoo.data import fetch, readers, sbd
from segzoo.data.registry import DatasetInfo, check_split, register_dataset
from segzoo.visualize import voc_palette  # noqa: F401  (segzoo.data.voc.voc_palette: the devkit colour map)

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_TAR = "VOCtrainval_11-May-2012.tar"
SEGMENTATION_SPLITS = ("train", "val", "trainval")
SPLITS = SEGMENTATION_SPLITS + ("train_aug",)
PREPARED_SUBDIR = "segzoo_tfds"


def _voc2012_dir(root):
    for candidate in (
        os.path.join(root, "VOCdevkit", "VOC2012"),
        os.path.join(root, "VOC2012"),
        root,
    ):
        if os.path.isdir(os.path.join(candidate, "ImageSets", "Segmentation")):
            return candidate
    return None


def find_voc_root(manual_dir, dl_manager=None, download=False):
    """Path of `VOC2012/` under `manual_dir`; extracts the tar or downloads if needed.

    Raises:
        ValueError: VOC is not there and cannot be downloaded (says what to put where).
    """
    return fetch.find_or_fetch(
        manual_dir,
        _voc2012_dir,
        VOC_TAR,
        VOC_URL,
        name="Pascal VOC 2012",
        layout=("VOCdevkit", "VOC2012"),
        contents="JPEGImages/, SegmentationClass/, ImageSets/Segmentation/",
        dl_manager=dl_manager,
        download=download,
    )


def image_feature_value(path):
    """What to give a tfds Image feature for `path`: the file itself when it is an RGB or
    grayscale JPEG (stored as is; decoded with 3 channels when read), else the decoded
    RGB array. Decodes once with PIL to check the file."""
    from PIL import Image

    image = readers.read_image(path)  # ValueError naming the file if corrupt
    with Image.open(path) as img:
        as_is = img.format == "JPEG" and img.mode in ("RGB", "L")
    return (os.fspath(path) if as_is else image), image.shape[:2]


def read_voc_label(path, num_classes, expected_hw, image_path):
    """Checked class-id array uint8 [H, W] of a label PNG or an SBD .mat."""
    if os.fspath(path).endswith(".mat"):
        mask = sbd.read_sbd_mask(path)
    else:
        mask = readers.read_label_png(path)
    if mask.shape != tuple(expected_hw):
        raise ValueError(
            f"Mask {os.fspath(path)!r} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image "
            f"{os.fspath(image_path)!r} is {expected_hw[1]}x{expected_hw[0]}; expected the "
            "same size."
        )
    readers.check_labels(mask, num_classes, path)
    return mask


class VocBuilderBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared by the VOC builders: finding (or downloading) VOC under the manual dir."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put VOCdevkit/VOC2012 (or {VOC_TAR}) in the data directory; for train_aug also "
        "benchmark_RELEASE/dataset (or benchmark.tgz)."
    )

    def __init__(self, *, download: bool = True, **kwargs):
        self._allow_download = download
        super().__init__(**kwargs)

    def _voc_root(self, dl_manager):
        return find_voc_root(dl_manager.manual_dir, dl_manager, self._allow_download)


class SegzooVoc2012(VocBuilderBase):
    """Pascal VOC 2012 SegmentationClass (+ SBD train_aug); see `segzoo.data.voc`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Palette-index labels, 255 kept, SBD train_aug config."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="segmentation", description="train / val / trainval"),
        tfds.core.BuilderConfig(name="aug", description="train_aug with SBD (10,582 images)"),
    ]

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
                    "image_id": tfds.features.Text(),
                }
            ),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        )

    def _split_generators(self, dl_manager):
        root = self._voc_root(dl_manager)
        lists = os.path.join(root, "ImageSets", "Segmentation")

        def voc_items(names):
            return [
                (
                    name,
                    os.path.join(root, "JPEGImages", name + ".jpg"),
                    os.path.join(root, "SegmentationClass", name + ".png"),
                )
                for name in names
            ]

        names = {
            s: readers.read_split_list(os.path.join(lists, s + ".txt")) for s in ("train", "val")
        }
        if self.builder_config.name == "segmentation":
            trainval_path = os.path.join(lists, "trainval.txt")
            trainval = (
                readers.read_split_list(trainval_path)
                if os.path.isfile(trainval_path)
                else sorted(set(names["train"]) | set(names["val"]))
            )
            return {
                "train": self._generate_examples(voc_items(names["train"])),
                "val": self._generate_examples(voc_items(names["val"])),
                "trainval": self._generate_examples(voc_items(trainval)),
            }
        sbd_dir = sbd.find_sbd(dl_manager.manual_dir, dl_manager, self._allow_download)
        items = []
        for name in sbd.train_aug_names(names["train"], names["val"], sbd_dir):
            image_path, mask_path = voc_items([name])[0][1:]
            sbd_image, sbd_mat = sbd.sbd_paths(sbd_dir, name)
            if not os.path.isfile(image_path):
                image_path = sbd_image
            if not os.path.isfile(mask_path):
                mask_path = sbd_mat
            items.append((name, image_path, mask_path))
        return {"train_aug": self._generate_examples(items)}

    def _generate_examples(self, items):
        for name, image_path, mask_path in items:
            image, hw = image_feature_value(image_path)
            mask = read_voc_label(mask_path, len(VOC_CLASSES), hw, image_path)
            yield name, {"image": image, "mask": mask[..., None], "image_id": name}


def prepared_builder(builder_cls, data_dir, download=True, **kwargs):
    """A prepared builder: manual dir `data_dir`, TFRecords in `data_dir/segzoo_tfds`.

    `data_dir=None` uses TFDS's defaults (`~/tensorflow_datasets`, manual files
    in `~/tensorflow_datasets/downloads/manual`).
    """
    if data_dir is None:
        prepared_dir, manual_dir = None, None
    else:
        data_dir = os.path.abspath(os.fspath(data_dir))
        if not os.path.isdir(data_dir):
            raise ValueError(f"data_dir {data_dir!r} is not a directory.")
        prepared_dir = os.path.join(data_dir, PREPARED_SUBDIR)
        manual_dir = data_dir
    builder = builder_cls(data_dir=prepared_dir, download=download, **kwargs)
    if manual_dir is None:
        manual_dir = os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir,
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
        )
    )
    return builder


def load_voc(split, data_dir=None, *, download=True, **_):
    """One split of VOC 2012 segmentation (module doc)."""
    check_split("voc", split, SPLITS)
    config = "aug" if split == "train_aug" else "segmentation"
    builder = prepared_builder(SegzooVoc2012, data_dir, download, config=config)
    ds = builder.as_dataset(split=split, shuffle_files=False)

    def to_element(example):
        return {
            "image": example["image"],
            "mask": tf.squeeze(example["mask"], -1),
            "image_id": example["image_id"],
        }

    return ds.map(to_element, num_parallel_calls=tf.data.AUTOTUNE)


def voc_info(data_dir=None, **_):
    """`DatasetInfo` of VOC 2012 segmentation: 21 classes, background first."""
    return DatasetInfo("semantic", len(VOC_CLASSES), VOC_CLASSES, splits=SPLITS)


register_dataset(
    "voc",
    loader=load_voc,
    info=voc_info,
    description="Pascal VOC 2012 SegmentationClass (tfds; + SBD train_aug)",
)
