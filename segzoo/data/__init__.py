"""segzoo.data: datasets and input pipelines.

ds = segzoo.data.load("shapes", "train")              # or voc, voc_instance, coco, folder
info = segzoo.data.get_info("shapes")                 # DatasetInfo
"""

from segzoo.data import coco, folder, shapes, voc, voc_instance  # noqa: F401  (registers)
from segzoo.data.registry import (
    DatasetInfo,
    default_splits,
    get_info,
    list_datasets,
    load,
    register_dataset,
)

__all__ = ["DatasetInfo", "default_splits", "get_info", "list_datasets", "load", "register_dataset"]
