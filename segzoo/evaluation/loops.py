"""Evaluation loops: a model over raw dataset elements, each image at its original size.

    from segzoo.evaluation.loops import evaluate_semantic, evaluate_instances
    metrics = evaluate_semantic(model, elements)                 # FCN metrics + num_images
    metrics, evaluator = evaluate_instances(model, elements, info)   # COCO AP + num_images

What `segzoo eval` runs and what the training tasks run on their validation
split. Prediction is `segzoo.inference` (batch 1, no resize).
"""

from __future__ import annotations

import itertools

import numpy as np


def evaluate_elements(elements, add, compute, *, max_images: int | None = None) -> dict:
    """The evaluation loop: `add(element)` for each of the first `max_images`
    elements (all when None), then `compute()` (a metrics dict) plus `num_images`.

    Raises:
        ValueError: `elements` is empty.
    """
    count = 0
    for element in itertools.islice(elements, max_images):
        add(element)
        count += 1
    if count == 0:
        raise ValueError("evaluation got no images (empty split?)")
    metrics = compute()
    metrics["num_images"] = count
    return metrics


def semantic_confusion(model, elements, labels_fn=None, *, max_images: int | None = None,
                       progress=None):
    """(`ConfusionMatrix`, image count) of a semantic model over raw elements
    {"image": uint8 [H, W, 3], "mask": uint8 [H, W]}, 255 ignored.

    Args:
        labels_fn: `labels_fn(image uint8 [H, W, 3]) -> class ids [H, W]`; default
            `segzoo.inference.predict_labels` (the whole image at its original size, batch 1).
        progress: optional `segzoo.inference.inputs.Progress`, advanced per image.
    """
    from segzoo.evaluation.semantic import ConfusionMatrix
    from segzoo.inference import predict_labels

    labels_fn = labels_fn or (lambda image: predict_labels(model, image))
    cm = ConfusionMatrix(len(model.class_names))

    def add(element):
        cm.update(np.asarray(element["mask"]), labels_fn(np.asarray(element["image"])))
        if progress is not None:
            progress.update()

    count = evaluate_elements(elements, add, dict, max_images=max_images)["num_images"]
    return cm, count


def evaluate_semantic(model, elements, labels_fn=None, *, max_images: int | None = None,
                      progress=None) -> dict:
    """FCN metrics over raw elements (`semantic_confusion`): `ConfusionMatrix.metrics()`
    plus `num_images`."""
    cm, count = semantic_confusion(model, elements, labels_fn, max_images=max_images,
                                   progress=progress)
    metrics = cm.metrics()
    metrics["num_images"] = count
    return metrics


# The ground-truth entries of an instance element that InstanceEvaluator.add reads.
INSTANCE_GT_KEYS = ("boxes", "classes", "masks", "is_crowd", "keypoints")


def instance_iou_types(model) -> tuple:
    """The COCOeval runs of an instance model's branches: box AP always, mask AP with masks,
    keypoint AP with keypoints."""
    return ("bbox",) + ("segm",) * bool(model.has_masks) + ("keypoints",) * bool(model.has_keypoints)


def evaluate_instances(model, elements, info=None, *, max_images=None, class_names=None,
                       detect_fn=None, progress=None):
    """COCO AP of an instance model over raw elements, each image at its original size.

    Category ids are `info.category_ids` when the dataset gives them, else
    `model.category_ids`; `class_names` (K names of classes 1..K) label the
    evaluator's per-class table (default `model.foreground_class_names`).

    Args:
        detect_fn: `detect_fn(image uint8 [H, W, 3]) -> {"boxes" [N, 4] xyxy input pixels,
            "scores", "classes", "masks" [N, H, W], ...}` (numpy, valid detections); default
            `segzoo.inference.predict_instances`.
        progress: optional `segzoo.inference.inputs.Progress`, advanced per image.
    Returns:
        (`InstanceEvaluator.compute()` plus `num_images`, the computed evaluator: its
        `coco_evals` feed `segzoo.evaluation.plots`).
    """
    from segzoo.evaluation.instance import InstanceEvaluator
    from segzoo.inference import predict_instances

    detect_fn = detect_fn or (lambda image: predict_instances(model, image))
    category_ids = info.category_ids if info is not None and info.category_ids else None
    evaluator = InstanceEvaluator(
        category_ids=category_ids or model.category_ids,
        class_names=class_names if class_names is not None else model.foreground_class_names,
        iou_types=instance_iou_types(model))

    def add(element):
        image = np.asarray(element["image"])
        gt = {key: np.asarray(element[key]) for key in INSTANCE_GT_KEYS if key in element}
        evaluator.add(int(np.asarray(element["image_id"])), gt, detect_fn(image),
                      image_size=image.shape[:2])
        if progress is not None:
            progress.update()

    return evaluate_elements(elements, add, evaluator.compute, max_images=max_images), evaluator


__all__ = ["evaluate_elements", "evaluate_instances", "evaluate_semantic", "semantic_confusion"]
