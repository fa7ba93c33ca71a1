"""Dataset registry: `load(name, split, ...)` and `get_info(name, ...)`.

Each dataset module registers a loader and an info function under its name;
`segzoo.data` imports them all. Semantic datasets yield
``{"image": uint8 [H, W, 3], "mask": uint8 [H, W], "image_id": tf.string}``;
instance datasets yield ``{"image": uint8 [H, W, 3], "boxes": float32 [N, 4]
xyxy pixels, "classes": int32 [N] in 1..K, "masks": uint8 [N, H, W],
"is_crowd": bool [N], "image_id": int64}``. Every image keeps its original
size and N may be 0.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable

from segzoo.conventions import IGNORE_LABEL  # noqa: F401  (re-exported)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and an evaluator need to know about a dataset.

    Attributes:
        task: "semantic" or "instance".
        num_classes: semantic: K classes including background (labels 0..K-1);
            instance: K foreground classes (labels 1..K, 0 = background/padding).
        class_names: semantic: K names, index = label; instance: K names for
            labels 1..K (index 0 is label 1).
        category_ids: instance only: the dataset's own id of labels 1..K (COCO
            ids are not contiguous); None for semantic datasets.
        ignore_label: label value excluded from losses and metrics (255).
        splits: the split names `load` accepts.
        keypoint_names: instance datasets loaded with keypoints: the K keypoint
            names (elements carry "keypoints" float32 [N, K, 3]); None otherwise.
        skeleton: pairs (i, j) of 0-based keypoint indices joined when drawing.
    """

    task: str
    num_classes: int
    class_names: tuple
    category_ids: tuple | None = None
    ignore_label: int = IGNORE_LABEL
    splits: tuple = ()
    keypoint_names: tuple | None = None
    skeleton: tuple = ()

    def __post_init__(self):
        if self.task not in ("semantic", "instance"):
            raise ValueError(
                f"DatasetInfo.task must be 'semantic' or 'instance', got {self.task!r}"
            )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"DatasetInfo: {len(self.class_names)} class_names for num_classes="
                f"{self.num_classes}; expected one name per class."
            )
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.category_ids is not None:
            object.__setattr__(self, "category_ids", tuple(int(c) for c in self.category_ids))
        if self.keypoint_names is not None:
            from segzoo.data.keypoints import check_skeleton

            names = tuple(str(n) for n in self.keypoint_names)
            object.__setattr__(self, "keypoint_names", names)
            object.__setattr__(self, "skeleton", check_skeleton(self.skeleton, len(names)))


@dataclasses.dataclass(frozen=True)
class _DatasetSpec:
    name: str
    loader: Callable  # (split, data_dir, **kwargs) -> tf.data.Dataset
    info: Callable  # (data_dir, **kwargs) -> DatasetInfo
    description: str


_DATASETS: dict[str, _DatasetSpec] = {}


def register_dataset(name: str, *, loader: Callable, info: Callable, description: str = ""):
    """Register `loader(split, data_dir, **kwargs)` and `info(data_dir, **kwargs)` as `name`."""
    if name in _DATASETS:
        raise ValueError(f"A dataset named {name!r} is already registered.")
    _DATASETS[name] = _DatasetSpec(name, loader, info, description)


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_DATASETS)


def _spec(name: str) -> _DatasetSpec:
    if name not in _DATASETS:
        close = difflib.get_close_matches(str(name), list(_DATASETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown dataset {name!r}.{hint} Available: {', '.join(sorted(_DATASETS))}."
        )
    return _DATASETS[name]


def get_info(name: str, data_dir=None, **kwargs) -> DatasetInfo:
    """The `DatasetInfo` of dataset `name` (same kwargs as `load`)."""
    return _spec(name).info(data_dir, **kwargs)


def load(name: str, split: str, data_dir=None, **kwargs):
    """Load one split of dataset `name` as an unbatched `tf.data.Dataset`.

    Args:
        name: "shapes", "voc", "voc_instance", "coco" or "folder".
        split: a name from `get_info(name).splits` ("train", "val", ...).
        data_dir: where the dataset's files are (see each dataset's module);
            not needed for "shapes".
        **kwargs: dataset options (e.g. `task="instance"`, `seed=` for shapes).

    Returns:
        `tf.data.Dataset` of dicts, images at their original size (module doc).

    Raises:
        ValueError: unknown name or split, missing or malformed files.
    """
    return _spec(name).loader(split, data_dir, **kwargs)


def check_split(dataset: str, split: str, splits) -> None:
    """Raise `ValueError` unless `split` is one of `splits`."""
    if split not in splits:
        raise ValueError(
            f"Dataset {dataset!r} has no split {split!r}; expected one of {tuple(splits)}."
        )
