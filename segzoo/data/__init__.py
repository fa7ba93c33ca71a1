"""segzoo.data: datasets and input pipelines.

ds = segzoo.data.load("shapes", "train")   # or voc, voc_instance, coco, folder,
                                           # instance_folder, labelme
info = segzoo.data.get_info("shapes")                 # DatasetInfo
"""

from segzoo.data import (  # noqa: F401  (registers)
    coco,
    folder,
    instance_folder,
    labelme,
    shapes,
    voc,
    voc_instance,
)
from segzoo.data.registry import (
    DatasetInfo,
    dataset_tasks,
    default_splits,
    get_info,
    list_datasets,
    load,
    register_dataset,
)

__all__ = ["DatasetInfo", "dataset_tasks", "default_splits", "get_info", "list_datasets", "load", "register_dataset"]
