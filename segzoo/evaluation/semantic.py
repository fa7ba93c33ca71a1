"""Semantic segmentation metrics from a confusion matrix (FCN's definitions).

The four numbers of Long et al., "Fully Convolutional Networks for Semantic
Segmentation" (their `score.py`), computed from a class confusion matrix
`hist[true, predicted]` accumulated over every evaluated pixel whose label is
not `ignore_label` (255, VOC's "void" and object borders):

    pixel_accuracy = diag.sum() / hist.sum()
    mean_accuracy  = nanmean(diag / hist.sum(1))
    iu             = diag / (hist.sum(1) + hist.sum(0) - diag)
    mean_iou       = nanmean(iu)
    freq           = hist.sum(1) / hist.sum()
    fw_iou         = (freq[freq > 0] * iu[freq > 0]).sum()

A class that never occurs in the labels nor in the predictions has IoU NaN and
is left out of the means (as in FCN); a class that is predicted but never
present has IoU 0 and counts.
"""

from __future__ import annotations

import numpy as np

from segzoo.conventions import IGNORE_LABEL


class ConfusionMatrix:
    """Streaming confusion matrix over pixels.

    Args:
        num_classes: K, the number of classes (background included).
        ignore_label: label value excluded from every count (default 255).

    Attributes:
        hist: int64 [K, K], `hist[i, j]` = number of pixels labelled i and
            predicted j.
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.hist = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def reset(self) -> None:
        self.hist[:] = 0

    def update(self, labels, predictions) -> None:
        """Adds the pixels of one image or a batch.

        Args:
            labels: integer array of any shape (e.g. [H, W] or [B, H, W]) with
                class ids in [0, K) or `ignore_label`.
            predictions: integer array of the same shape, class ids in [0, K).

        Raises:
            ValueError: shapes differ, or a non-ignored label / a prediction is
                outside [0, K).
        """
        labels = np.asarray(labels).astype(np.int64, copy=False)
        predictions = np.asarray(predictions).astype(np.int64, copy=False)
        if labels.shape != predictions.shape:
            raise ValueError(
                f"labels shape {labels.shape} and predictions shape {predictions.shape} differ; "
                "compare predictions at the label's (original) resolution"
            )
        k = self.num_classes
        valid = labels != self.ignore_label
        labels, predictions = labels[valid], predictions[valid]
        bad = (labels < 0) | (labels >= k)
        if bad.any():
            raise ValueError(
                f"label values {sorted(set(labels[bad].tolist()))[:10]} are outside [0, {k}) "
                f"and not the ignore label {self.ignore_label}"
            )
        bad = (predictions < 0) | (predictions >= k)
        if bad.any():
            raise ValueError(f"prediction values outside [0, {k}): {sorted(set(predictions[bad].tolist()))[:10]}")
        # FCN's fast_hist: one bincount over true * K + predicted.
        self.hist += np.bincount(k * labels + predictions, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        """Adds another matrix's counts (e.g. from another worker)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.hist += other.hist

    def metrics(self) -> dict:
        """FCN's metrics as Python floats in [0, 1].

        Returns:
            dict with pixel_accuracy, mean_accuracy, mean_iou, fw_iou (floats)
            and per_class_iou (list of K floats; NaN for a class absent from
            both labels and predictions).
        """
        hist = self.hist.astype(np.float64)
        diag = np.diag(hist)
        total = hist.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            pixel_accuracy = diag.sum() / total if total > 0 else float("nan")
            per_class_acc = diag / hist.sum(1)
            iu = diag / (hist.sum(1) + hist.sum(0) - diag)
            freq = hist.sum(1) / total if total > 0 else np.zeros_like(diag)
        mean_accuracy = _nanmean(per_class_acc)
        mean_iou = _nanmean(iu)
        fw_iou = float((freq[freq > 0] * iu[freq > 0]).sum()) if total > 0 else float("nan")
        return {
            "pixel_accuracy": float(pixel_accuracy),
            "mean_accuracy": mean_accuracy,
            "mean_iou": mean_iou,
            "fw_iou": fw_iou,
            "per_class_iou": [float(v) for v in iu],
        }


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def format_table(metrics: dict, class_names=None) -> str:
    """Human-readable table: per-class IoU with class names, then the four means."""
    per_class = metrics["per_class_iou"]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(len(per_class))]
    width = max([len("frequency-weighted IoU")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  IoU"]
    for name, value in zip(names, per_class, strict=True):
        text = "   -" if np.isnan(value) else f"{100 * value:6.2f}"
        lines.append(f"{name:<{width}}  {text}")
    lines.append("-" * (width + 8))
    for key, label in (
        ("pixel_accuracy", "pixel accuracy"),
        ("mean_accuracy", "mean accuracy"),
        ("mean_iou", "mean IoU"),
        ("fw_iou", "frequency-weighted IoU"),
    ):
        lines.append(f"{label:<{width}}  {100 * metrics[key]:6.2f}")
    return "\n".join(lines)
