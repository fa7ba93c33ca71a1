"""What both training tasks need of a dataset: the task check and the task's load options.

The one rule for datasets that serve both tasks (`shapes` generates semantic
masks or instances): the model's task is passed as `task=` to
`segzoo.data.get_info` / `segzoo.data.load`. Every caller (the training
tasks, `segzoo eval`) takes the options from `task_data_args`.
"""

from __future__ import annotations

# Datasets that generate either task's elements and take `task=` to choose.
MULTI_TASK_DATASETS = ("shapes",)


def task_data_args(data_name: str, task: str, data_args: dict | None = None, *,
                   keypoints: bool = False) -> dict:
    """`data_args` plus `task=task` for datasets of both tasks (an explicit `task` is kept),
    and `keypoints=True` for keypoint models (coco reads person_keypoints_*.json)."""
    kwargs = dict(data_args or {})
    if data_name in MULTI_TASK_DATASETS:
        kwargs.setdefault("task", task)
    if keypoints:
        kwargs.setdefault("keypoints", True)
    return kwargs


def check_dataset_task(info, model_task: str, data_name: str) -> None:
    """`ValueError` unless the dataset (`DatasetInfo` or None) is of the model's task."""
    if info is not None and info.task != model_task:
        article = "an" if model_task == "instance" else "a"
        raise ValueError(
            f"dataset {data_name!r} is a {info.task} dataset but the model is {article} "
            f"{model_task} model; pick a dataset of the model's task (see README)"
        )


def load_split(data_name: str, split: str, data_dir, task: str, data_args: dict | None = None,
               max_images: int | None = None):
    """`segzoo.data.load` of one split with the task's options, the first `max_images` elements."""
    import segzoo.data

    ds = segzoo.data.load(data_name, split, data_dir=data_dir,
                          **task_data_args(data_name, task, data_args))
    if max_images:
        ds = ds.take(int(max_images))
    return ds
