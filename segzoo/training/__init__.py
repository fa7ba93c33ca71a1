"""segzoo.training: the common fit loop and its parts.

    from segzoo.training import train
    result = train({"model": "unet", "data": "shapes", "model_args": {"base_filters": 16}})

Parts: `losses.SparseSegmentationCrossEntropy` (ignores 255),
`metrics.SegmentationMeanIoU`, `schedules.PolyWarmup`,
`optimizers.build_optimizer`, `callbacks` (atomic best checkpoint, resume,
NaN guard, time limit, TensorBoard images, metrics.json), `recipes`,
`tasks.get_task` (`semantic_task`, `instance_task`, `task_data`),
`distribute.get_strategy`, `setup` (recipe and model from the flags),
`run_callbacks` (the callbacks of a run), `fit.train`. Prediction and
evaluation loops are `segzoo.inference` and `segzoo.evaluation.loops`.
"""

from segzoo.training.losses import SparseSegmentationCrossEntropy
from segzoo.training.metrics import SegmentationMeanIoU
from segzoo.training.recipes import Recipe, get_recipe, list_recipes
from segzoo.training.schedules import PolyWarmup


def train(config, **kwargs):
    """`segzoo.training.fit.train` (imported on first use)."""
    from segzoo.training.fit import train as _train

    return _train(config, **kwargs)


__all__ = ["PolyWarmup", "Recipe", "SegmentationMeanIoU", "SparseSegmentationCrossEntropy",
           "get_recipe", "list_recipes", "train"]
