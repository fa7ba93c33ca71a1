"""Semantic Boundaries Dataset (Hariharan et al. 2011) for VOC's `train_aug` split.

FCN and DeepLab train on VOC 2012 augmented with SBD's annotations:

    train_aug = (SBD train + SBD val + VOC2012 seg train) - VOC2012 seg val

which is 10,582 images with the official files. SBD is found under the data
directory as `benchmark_RELEASE/dataset/` (holding `cls/NAME.mat`, `img/NAME.jpg`,
`train.txt`, `val.txt`), or as the archive `benchmark.tgz` (extracted on first
use). A `.mat` file's class map is `GTcls.Segmentation` (uint8 class ids 0..20;
SBD has no 255 borders).
"""

from __future__ import annotations

import os

import numpy as np

from segzoo.data import fetch, readers

SBD_URL = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
SBD_ARCHIVE = "benchmark.tgz"
TRAIN_AUG_SIZE = 10582


def _dataset_dir(root):
    for candidate in (
        os.path.join(root, "benchmark_RELEASE", "dataset"),
        os.path.join(root, "dataset"),
        root,
    ):
        if os.path.isdir(os.path.join(candidate, "cls")) and os.path.isfile(
            os.path.join(candidate, "train.txt")
        ):
            return candidate
    return None


def find_sbd(manual_dir, dl_manager=None, download=False):
    """Path of SBD's `dataset/` directory (module doc); extracts or downloads if needed.

    Raises:
        ValueError: SBD is not under `manual_dir` and cannot be downloaded.
    """
    return fetch.find_or_fetch(
        manual_dir,
        _dataset_dir,
        SBD_ARCHIVE,
        SBD_URL,
        name="SBD (for split 'train_aug')",
        layout=("benchmark_RELEASE", "dataset"),
        contents="cls/, img/, train.txt, val.txt",
        dl_manager=dl_manager,
        download=download,
    )


def read_sbd_mask(path) -> np.ndarray:
    """Class ids uint8 `[H, W]` of an SBD `cls/NAME.mat` (its `GTcls.Segmentation`).

    Raises:
        ValueError: missing or unreadable file, or no `GTcls.Segmentation` in it.
    """
    import scipy.io

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"SBD label file {path!r} does not exist.")
    try:
        mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
        segmentation = mat["GTcls"].Segmentation
    except Exception as e:
        raise ValueError(
            f"Cannot read GTcls.Segmentation from {path!r} ({type(e).__name__}: {e}); expected "
            "an SBD cls/*.mat file."
        ) from e
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2:
        raise ValueError(
            f"GTcls.Segmentation in {path!r} has shape {segmentation.shape}; expected [H, W]."
        )
    return segmentation.astype(np.uint8)


def train_aug_names(voc_train, voc_val, sbd_dir) -> list[str]:
    """Sorted names of `train_aug` = (SBD train + SBD val + VOC train) - VOC val."""
    sbd = set(readers.read_split_list(os.path.join(sbd_dir, "train.txt")))
    sbd |= set(readers.read_split_list(os.path.join(sbd_dir, "val.txt")))
    return sorted((sbd | set(voc_train)) - set(voc_val))


def sbd_paths(sbd_dir, name):
    """(image path, .mat path) of an SBD image."""
    return (
        os.path.join(sbd_dir, "img", name + ".jpg"),
        os.path.join(sbd_dir, "cls", name + ".mat"),
    )
