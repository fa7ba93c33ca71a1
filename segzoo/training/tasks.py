"""Task objects: the task-specific part of the common fit loop.

`get_task(model)` returns a `SemanticTask` (`segzoo.training.semantic_task`)
for semantic models (logits [B, H, W, K]) and an `InstanceTask`
(`segzoo.training.instance_task`) for instance models. A task knows how to
build the training / validation `tf.data` pipelines, what to pass to
`model.compile`, which callbacks it adds (written into the epoch logs before
the checkpoint reads them), how to evaluate a model on raw dataset elements,
and which validation metric selects the best checkpoint (`monitor`,
`monitor_mode`). The two task modules do not import each other or this one.
"""

from __future__ import annotations

from segzoo.training.instance_task import InstanceTask
from segzoo.training.semantic_task import SemanticTask

_TASKS = {"semantic": SemanticTask, "instance": InstanceTask}
# The options an InstanceTask takes (the others configure semantic training only).
_INSTANCE_OPTIONS = ("val_max_images", "data_args", "max_instances", "shuffle_buffer",
                     "scale_jitter")


def get_task(model, **options):
    """The task object of `model` (by `model.task`).

    `options` configure a `SemanticTask` (see its arguments); an `InstanceTask`
    takes `val_max_images`, `data_args`, `max_instances`, `shuffle_buffer`,
    `scale_jitter` of them.

    Raises:
        ValueError: the model is not a segzoo model of a known task.
    """
    from segzoo.models.base import is_segzoo_model

    if not is_segzoo_model(model):
        raise ValueError(
            f"model {type(model).__name__} does not follow the segzoo model contract "
            "(segzoo.models.base.SegmentationModel with task 'semantic' or 'instance'); "
            "use a model from segzoo.get_model"
        )
    if model.task == "instance":
        options = {k: v for k, v in options.items() if k in _INSTANCE_OPTIONS}
    return _TASKS[model.task](model, **options)


__all__ = ["InstanceTask", "SemanticTask", "get_task"]
