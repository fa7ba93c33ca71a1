"""Evaluation pictures (matplotlib, headless Agg canvas): `segzoo eval --plots DIR`.

Semantic (`write_semantic_plots`):
    confusion_matrix.png   rows = true class, columns = predicted, each row divided by
                           its pixel count (a row sums to 1; ignore-label pixels excluded)
    per_class_iou.png      one horizontal bar per class, mean IoU as a line
Instance (`write_instance_plots`, from pycocotools `COCOeval.eval["precision"]`,
[T IoU thresholds, R=101 recall points, K classes, A areas, M max-detections]):
    {box,mask}_pr_curves.png    per class, precision against recall at IoU 0.5 and 0.75
                                (area "all", 100 detections), AP in the legend
    {box,mask}_ap_by_size.png   AP (IoU 0.5:0.95) for small / medium / large objects
                                (COCO area ranges < 32^2, 32^2..96^2, > 96^2 pixels),
                                all classes and (up to 12 classes) each class

The numbers drawn come from `normalized_confusion`, `precision_recall_curves`
and `ap_by_size`, which are tested against COCOeval's own summary. Figures are
built on `matplotlib.figure.Figure` with an Agg canvas (no pyplot state, no
display needed); `figure_to_rgb` gives the pixels for TensorBoard.
"""

from __future__ import annotations

import math
import os

import numpy as np

_SIZES = ("small", "medium", "large")


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_to_rgb(figure) -> np.ndarray:
    """The rendered figure, uint8 [H, W, 3] RGB."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_figure(figure, path: str) -> str:
    """Writes `figure` as PNG atomically (temporary file + rename); returns `path`."""
    from segzoo.inference.inputs import atomic_save

    atomic_save(path, lambda tmp: figure.savefig(tmp, format="png"))
    return path


# === Semantic ===
def normalized_confusion(hist) -> np.ndarray:
    """float64 [K, K]: `hist[i, j] / hist[i].sum()` (NaN rows for classes never labelled)."""
    hist = np.asarray(hist, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return hist / hist.sum(1, keepdims=True)


def confusion_matrix_figure(hist, class_names, title="Normalised confusion matrix"):
    """Heat map of `normalized_confusion(hist)` with class names on both axes."""
    matrix = normalized_confusion(hist)
    k = matrix.shape[0]
    names = list(class_names)
    side = max(5.0, 0.45 * k + 2.5)
    figure = _figure(side + 1.0, side)
    axes = figure.add_subplot()
    image = axes.imshow(np.nan_to_num(matrix, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(k), names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                value = matrix[i, j]
                if np.isnan(value):
                    continue
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if value > 0.5 else "black")
    return figure


def iou_bars_figure(per_class_iou, class_names, mean_iou=None, title="IoU per class"):
    """Horizontal bars of per-class IoU (0..1); classes never seen are marked "n/a"."""
    values = np.asarray(per_class_iou, np.float64)
    names = list(class_names)
    k = len(values)
    figure = _figure(7.0, max(2.5, 0.35 * k + 1.2))
    axes = figure.add_subplot()
    positions = np.arange(k)
    axes.barh(positions, np.nan_to_num(values, nan=0.0), color="tab:blue")
    for y, value in zip(positions, values, strict=True):
        axes.text(min(value, 0.88) + 0.01 if not np.isnan(value) else 0.01, y,
                  "n/a" if np.isnan(value) else f"{value:.3f}", va="center", fontsize=8)
    if mean_iou is not None and not np.isnan(mean_iou):
        axes.axvline(mean_iou, color="tab:red", linestyle="--", label=f"mean IoU {mean_iou:.3f}")
        axes.legend(loc="lower right")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("IoU")
    axes.set_title(title)
    return figure


def write_semantic_plots(out_dir, hist, class_names) -> list[str]:
    """confusion_matrix.png and per_class_iou.png in `out_dir`; returns their paths."""
    from segzoo.evaluation.semantic import ConfusionMatrix

    cm = ConfusionMatrix(len(hist))
    cm.hist[:] = np.asarray(hist, np.int64)
    metrics = cm.metrics()
    os.makedirs(out_dir, exist_ok=True)
    return [
        save_figure(confusion_matrix_figure(hist, class_names),
                    os.path.join(out_dir, "confusion_matrix.png")),
        save_figure(iou_bars_figure(metrics["per_class_iou"], class_names, metrics["mean_iou"]),
                    os.path.join(out_dir, "per_class_iou.png")),
    ]


# === Instance ===
def _category_names(coco_eval) -> list[str]:
    cats = coco_eval.cocoGt.cats
    return [str(cats.get(c, {}).get("name", f"class {c}")) for c in coco_eval.params.catIds]


def _iou_index(coco_eval, iou: float) -> int:
    thresholds = np.asarray(coco_eval.params.iouThrs)
    index = int(np.argmin(np.abs(thresholds - iou)))
    if abs(thresholds[index] - iou) > 1e-6:
        raise ValueError(f"IoU {iou} is not a COCOeval threshold ({thresholds.tolist()})")
    return index


def precision_recall_curves(coco_eval, ious=(0.5, 0.75)) -> dict:
    """{class name: {iou: (recall [R], precision [R], AP)}} from an accumulated COCOeval.

    Precision is COCO's interpolated precision at the 101 recall thresholds
    (area "all", the largest max-detections); points COCOeval marks -1 (recall
    never reached) are NaN; AP is the mean over the valid points (NaN if no
    ground truth), so the mean of the classes' AP at 0.5 is COCO's AP50.
    """
    precision = coco_eval.eval["precision"]  # [T, R, K, A, M]
    recall = np.asarray(coco_eval.params.recThrs, np.float64)
    curves = {}
    for k, name in enumerate(_category_names(coco_eval)):
        curves[name] = {}
        for iou in ious:
            values = precision[_iou_index(coco_eval, iou), :, k, 0, -1].astype(np.float64)
            valid = values > -1
            ap = float(values[valid].mean()) if valid.any() else float("nan")
            curves[name][iou] = (recall, np.where(valid, values, np.nan), ap)
    return curves


def area_ranges(coco_eval) -> tuple[str, ...]:
    """The object sizes `coco_eval` has, of small / medium / large: all three for boxes and
    masks, medium / large for keypoints (COCO's keypoint evaluation has no small range)."""
    labels = set(coco_eval.params.areaRngLbl)
    return tuple(size for size in _SIZES if size in labels)


def ap_by_size(coco_eval) -> dict:
    """{"all" or class name: {size: AP over IoU 0.5:0.95}} for each size of `area_ranges`,
    NaN where no ground truth; "all" equals COCOeval's APs / APm / APl (`stats[3:6]`; for
    keypoints APm / APl, `stats[3:5]`)."""
    precision = coco_eval.eval["precision"]
    labels = list(coco_eval.params.areaRngLbl)
    result = {"all": {}}
    names = _category_names(coco_eval)
    for name in names:
        result[name] = {}
    for size in area_ranges(coco_eval):
        a = labels.index(size)
        values = precision[:, :, :, a, -1]
        result["all"][size] = float(values[values > -1].mean()) if (values > -1).any() else float("nan")
        for k, name in enumerate(names):
            v = values[:, :, k]
            result[name][size] = float(v[v > -1].mean()) if (v > -1).any() else float("nan")
    return result


def precision_recall_figure(coco_eval, title="", ious=(0.5, 0.75)):
    """One panel per class: precision-recall at each IoU in `ious`."""
    curves = precision_recall_curves(coco_eval, ious)
    names = list(curves)
    columns = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure = _figure(3.2 * columns, 3.0 * rows + 0.4)
    figure.suptitle(title)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        for index_iou, (iou, (recall, precision, ap)) in enumerate(curves[name].items()):
            style = ("-", "--", ":", "-.")[index_iou % 4]
            label = f"IoU {iou:g}: AP {'n/a' if math.isnan(ap) else f'{ap:.3f}'}"
            axes.plot(recall, precision, style, label=label)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_title(name)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.legend(loc="lower left", fontsize=8)
    return figure


def ap_by_size_figure(coco_eval, title="", max_classes=12):
    """Grouped bars: AP of small / medium / large objects (those of `area_ranges`), all classes
    (and each class)."""
    table = ap_by_size(coco_eval)
    sizes = area_ranges(coco_eval)
    groups = ["all"] + ([n for n in table if n != "all"] if len(table) - 1 <= max_classes else [])
    figure = _figure(max(6.0, 1.2 + 0.6 * len(groups) * 1.5), 4.0)
    axes = figure.add_subplot()
    width = 0.8 / len(sizes)
    positions = np.arange(len(groups))
    for s, size in enumerate(sizes):
        values = np.array([table[g][size] for g in groups], np.float64)
        offset = (s - (len(sizes) - 1) / 2) * width
        bars = axes.bar(positions + offset, np.nan_to_num(values, nan=0.0), width, label=size)
        for bar, value in zip(bars, values, strict=True):
            axes.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                      "n/a" if np.isnan(value) else f"{value:.2f}", ha="center", fontsize=7)
    axes.set_xticks(positions, groups, rotation=30 if len(groups) > 4 else 0, ha="right"
                    if len(groups) > 4 else "center")
    axes.set_ylim(0, 1.08)
    axes.set_ylabel("AP (IoU 0.5:0.95)")
    axes.set_title(title or "AP by object size")
    axes.legend(title="object area", fontsize=8)
    return figure


def write_instance_plots(out_dir, coco_evals: dict) -> list[str]:
    """`{prefix}_pr_curves.png` and `{prefix}_ap_by_size.png` per COCOeval in
    `coco_evals` ({"box": COCOeval, "mask": COCOeval}, accumulated); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for prefix, coco_eval in coco_evals.items():
        paths.append(save_figure(
            precision_recall_figure(coco_eval, f"{prefix} precision-recall"),
            os.path.join(out_dir, f"{prefix}_pr_curves.png")))
        paths.append(save_figure(
            ap_by_size_figure(coco_eval, f"{prefix} AP by object size"),
            os.path.join(out_dir, f"{prefix}_ap_by_size.png")))
    return paths
