"""The evaluation pictures of `segzoo eval --plots`, in TensorBoard at the end of training.

`EvaluationPlots` runs once, in `on_train_end`: it evaluates the run's best
checkpoint (`RUN/model.keras`; the model as it stands if none was written) on
up to `max_images` validation images at their original size and writes the
figures of `segzoo.evaluation.plots` as TensorBoard images under
`RUN/tensorboard/plots` (tab "Images"; step = the last epoch):

    semantic: confusion_matrix, per_class_iou
    instance: box_pr_curves, box_ap_by_size, mask_pr_curves, mask_ap_by_size

The numbers are those `segzoo eval` computes (`semantic_confusion`,
`instance_evaluator`), on the capped validation subset.
"""

from __future__ import annotations

import os

import keras
import numpy as np


def semantic_confusion(model, elements, labels_fn=None, max_images=None, progress=None):
    """`ConfusionMatrix` of a semantic model over raw elements {"image", "mask"}.

    Args:
        labels_fn: `labels_fn(image uint8 [H, W, 3]) -> class ids [H, W]`; default:
            argmax of the model's softmax on the whole image.
        progress: optional `segzoo.inference.inputs.Progress`, advanced per image.
    """
    import itertools

    from segzoo.evaluation.semantic import ConfusionMatrix
    from segzoo.inference.tta import probability_fn

    if labels_fn is None:
        fn = probability_fn(model)

        def labels_fn(image):
            return fn(np.asarray(image)[None])[0].argmax(-1)

    cm = ConfusionMatrix(len(model.class_names))
    count = 0
    for element in itertools.islice(elements, max_images):
        cm.update(np.asarray(element["mask"]), labels_fn(np.asarray(element["image"])))
        count += 1
        if progress is not None:
            progress.update()
    if count == 0:
        raise ValueError("evaluation got no images (empty split?)")
    return cm, count


def instance_evaluator(model, elements, info=None, detect_fn=None, max_images=None, progress=None,
                       class_names=None):
    """`InstanceEvaluator` (computed) of an instance model over raw elements, and the image count.

    Args:
        detect_fn: `detect_fn(image) -> {"boxes", "scores", "classes", "masks" [N, H, W]}`
            (numpy, valid detections); default: the model on the whole image.
    """
    import itertools

    from segzoo.evaluation.instance import InstanceEvaluator

    if detect_fn is None:
        from segzoo.training.instance_task import predict_instances

        def detect_fn(image):
            return predict_instances(model, image)

    category_ids = getattr(info, "category_ids", None) or getattr(model, "category_ids", None)
    names = class_names if class_names is not None else list(model.class_names)
    evaluator = InstanceEvaluator(category_ids=category_ids, class_names=names)
    count = 0
    for element in itertools.islice(elements, max_images):
        image = np.asarray(element["image"])
        gt = {k: np.asarray(element[k]) for k in ("boxes", "classes", "masks", "is_crowd") if k in element}
        evaluator.add(int(np.asarray(element["image_id"])), gt, detect_fn(image),
                      image_size=image.shape[:2])
        count += 1
        if progress is not None:
            progress.update()
    if count == 0:
        raise ValueError("evaluation got no images (empty split?)")
    evaluator.compute()
    return evaluator, count


def evaluation_figures(model, elements, info=None, max_images=None) -> dict:
    """{name: matplotlib Figure} of `model` on raw validation elements."""
    from segzoo.evaluation import plots

    if model.task == "instance":
        evaluator, _ = instance_evaluator(model, elements, info, max_images=max_images)
        figures = {}
        for prefix, coco_eval in evaluator.coco_evals.items():
            figures[f"{prefix}_pr_curves"] = plots.precision_recall_figure(
                coco_eval, f"{prefix} precision-recall")
            figures[f"{prefix}_ap_by_size"] = plots.ap_by_size_figure(
                coco_eval, f"{prefix} AP by object size")
        return figures
    cm, _ = semantic_confusion(model, elements, max_images=max_images)
    metrics = cm.metrics()
    return {
        "confusion_matrix": plots.confusion_matrix_figure(cm.hist, model.class_names),
        "per_class_iou": plots.iou_bars_figure(metrics["per_class_iou"], model.class_names,
                                               metrics["mean_iou"]),
    }


class EvaluationPlots(keras.callbacks.Callback):
    """Writes the evaluation figures to TensorBoard when training ends (see module docstring).

    Args:
        log_dir: the run's TensorBoard directory (figures go to `log_dir/plots`).
        load_elements: `() -> iterable of raw validation elements` (original sizes).
        info: the dataset's `DatasetInfo` (category ids of instance datasets), or None.
        checkpoint: the best checkpoint path, evaluated when it exists.
        max_images: validation images evaluated (the first ones).
    """

    def __init__(self, log_dir, load_elements, info=None, checkpoint=None, max_images=64):
        super().__init__()
        self.log_dir, self.load_elements, self.info = log_dir, load_elements, info
        self.checkpoint, self.max_images = checkpoint, max_images
        self.epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_end(self, logs=None):
        import tensorflow as tf

        from segzoo.evaluation.plots import figure_to_rgb

        model = self.model
        if self.checkpoint and os.path.exists(self.checkpoint):
            from segzoo.models.base import load_checkpoint

            model = load_checkpoint(self.checkpoint)
        figures = evaluation_figures(model, self.load_elements(), self.info, self.max_images)
        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "plots"))
        with writer.as_default():
            for name, figure in figures.items():
                tf.summary.image(name, figure_to_rgb(figure)[None], step=self.epoch)
        writer.flush()
        writer.close()
