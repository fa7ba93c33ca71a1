"""The evaluation pictures of `segzoo eval --plots`, in TensorBoard at the end of training.

`EvaluationPlots` runs once, in `on_train_end`: it evaluates the run's best
checkpoint (`RUN/model.keras`; the model as it stands if none was written) on
up to `max_images` validation images at their original size and writes the
figures of `segzoo.evaluation.plots` as TensorBoard images under
`RUN/tensorboard/plots` (tab "Images"; step = the last epoch):

    semantic: confusion_matrix, per_class_iou
    instance: box_pr_curves, box_ap_by_size, mask_pr_curves, mask_ap_by_size

The numbers are those `segzoo eval` computes (`segzoo.evaluation.loops`), on the
capped validation subset.
"""

from __future__ import annotations

import os

import keras


def evaluation_figures(model, elements, info=None, max_images=None) -> dict:
    """{name: matplotlib Figure} of `model` on raw validation elements."""
    from segzoo.evaluation import plots
    from segzoo.evaluation.loops import evaluate_instances, semantic_confusion

    if model.task == "instance":
        _, evaluator = evaluate_instances(model, elements, info, max_images=max_images)
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


def evaluation_plots_callback(out, recipe, data_dir, info, task: str) -> EvaluationPlots:
    """`EvaluationPlots` of a run directory `out`: the recipe's validation split (at most
    64 images, or `recipe.val_max_images` when fewer), figures under `out/tensorboard/plots`."""
    from segzoo.training.task_data import load_split

    max_images = min(64, recipe.val_max_images or 64)

    def load_elements():
        return load_split(recipe.data, recipe.val_split, data_dir, task, recipe.data_args,
                          max_images).as_numpy_iterator()

    return EvaluationPlots(os.path.join(out, "tensorboard"), load_elements, info,
                           checkpoint=os.path.join(out, "model.keras"), max_images=max_images)


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
