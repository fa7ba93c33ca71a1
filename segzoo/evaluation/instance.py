"""COCO-style instance evaluation (box and mask AP) through pycocotools' COCOeval.

    evaluator = InstanceEvaluator(category_ids=info.category_ids, class_names=info.class_names)
    for element, detections in ...:
        evaluator.add(image_id, gt={"boxes", "classes", "masks", "is_crowd"}, detections={...})
    metrics = evaluator.compute()   # {"box_ap": ..., "mask_ap50": ..., ...}
    print(evaluator.table())

Ground truth is built in memory as a COCO dataset from what `add` receives
(masks RLE-encoded with `pycocotools.mask.encode`, `area` = mask pixel count,
`iscrowd` from `is_crowd`, `bbox` as COCO's `[x, y, w, h]`), or taken from the
original annotation file with `InstanceEvaluator.from_coco_json(path)` so the
evaluation sees COCO's own areas and crowd regions. Detections become COCO
result lists (one for "bbox", one for "segm", the latter with RLE masks and
no bbox so pycocotools derives area and box from the mask, as detectron2
does). Contiguous class ids 1..K are mapped through `category_ids` so results
carry the dataset's original (possibly non-contiguous) category ids.

Keypoints (`iou_types` with "keypoints"): ground truth and detections carry
"keypoints" [N, K, 3]; COCOeval(..., "keypoints") matches by OKS with the
sigmas of `segzoo.evaluation.keypoints` (COCO's for K = 17, a documented
default otherwise). Ground truth with no labelled keypoint is ignored, as in
COCO. A keypoint detection's score is its box score.

Mask scoring (MS R-CNN): detections with "mask_scores" [N] rank their masks
by them in the "segm" evaluation, while "bbox" (and "keypoints") keep the box
scores, as the MS R-CNN reference evaluates.

Metric values are in 0..1. Where COCOeval reports -1 ("no ground truth in this
area range / for this class"), `compute()` returns `nan` (as detectron2 does):
it is not a score of zero and must not be averaged as one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segzoo.evaluation.keypoints import coco_keypoints, keypoint_sigmas

IOU_TYPES = {"bbox": "box", "segm": "mask", "keypoints": "keypoint"}
# COCOeval.stats indices of the values reported, by suffix (keypoints: no small range).
_STAT_INDEX = {"ap": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5}
_KEYPOINT_STAT_INDEX = {"ap": 0, "ap50": 1, "ap75": 2, "ap_medium": 3, "ap_large": 4}


def encode_masks(masks) -> list[dict]:
    """RLE-encodes binary masks.

    Args:
        masks: uint8/bool array [N, H, W] (non-zero = inside).
    Returns:
        N COCO RLE dicts {"size": [H, W], "counts": bytes}.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    stacked = np.asfortranarray((masks != 0).transpose(1, 2, 0).astype(np.uint8))
    return list(mask_utils.encode(stacked))


def xyxy_to_xywh(boxes) -> np.ndarray:
    """[N, 4] `[x1, y1, x2, y2]` -> COCO `[x, y, width, height]` (float64)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _quiet(fn, *args):
    """Runs a chatty pycocotools call with its prints captured."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _nan_if_missing(value: float) -> float:
    return float("nan") if value < 0 else float(value)


class InstanceEvaluator:
    """Accumulates ground truth and detections per image, then runs COCOeval.

    Args:
        category_ids: list[int] of length K, the dataset's original category id
            of contiguous classes 1..K (COCO's ids are non-contiguous). None:
            class k is category k.
        class_names: names of classes 1..K (length K, as `DatasetInfo` and
            `model.foreground_class_names`), or with `category_ids` a model's
            `class_names` (K + 1, background at index 0). Only used for labels
            in `table()` and `per_class_*` results.
        iou_types: which COCOeval runs: "bbox", "segm" and/or "keypoints".
        keypoint_sigmas: K OKS sigmas; None: `segzoo.evaluation.keypoints`'s
            choice for the K of the first keypoints added.
    """

    def __init__(self, category_ids=None, class_names=None, iou_types=("bbox", "segm"),
                 keypoint_sigmas=None):
        for iou_type in iou_types:
            if iou_type not in IOU_TYPES:
                raise ValueError(f"iou_types: unknown {iou_type!r}; expected some of "
                                 f"{', '.join(map(repr, IOU_TYPES))}")
        self.iou_types = tuple(iou_types)
        self.keypoint_sigmas = keypoint_sigmas
        self._num_keypoints = None
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]
        if self.category_ids is not None and len(set(self.category_ids)) != len(self.category_ids):
            raise ValueError(f"category_ids must be distinct, got {self.category_ids}")
        self.class_names = self._names_for_classes(class_names)
        self._coco_gt = None  # set by from_coco_json
        self._results = None
        self.reset()

    # === Set-up ===
    def _names_for_classes(self, class_names):
        if class_names is None:
            return None
        names = [str(n) for n in class_names]
        num = len(self.category_ids) if self.category_ids is not None else None
        if num is not None and len(names) == num + 1:
            return names[1:]
        if num is not None and len(names) != num:
            raise ValueError(
                f"class_names has {len(names)} entries but category_ids has {num}; "
                "give one name per class 1..K (or K + 1 with background first)"
            )
        return names

    @classmethod
    def from_coco_json(cls, path, category_ids=None, class_names=None, iou_types=("bbox", "segm"),
                       keypoint_sigmas=None):
        """Evaluates against an existing COCO annotation file (crowd regions included).

        `add(image_id, None, detections)` then takes the file's image ids;
        only images passed to `add` are evaluated. `category_ids` defaults to
        the file's category ids in increasing order (class k -> k-th smallest
        id, segzoo's `coco` dataset mapping); `class_names` to their names.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"COCO annotation file {path!r} does not exist")
        coco_gt = _quiet(COCO, path)
        categories = sorted(coco_gt.dataset.get("categories", []), key=lambda c: c["id"])
        if category_ids is None:
            category_ids = [c["id"] for c in categories]
            if class_names is None:
                class_names = [c["name"] for c in categories]
        evaluator = cls(category_ids, class_names, iou_types, keypoint_sigmas)
        evaluator._coco_gt = coco_gt
        return evaluator

    def reset(self):
        """Forgets every image added so far."""
        self._images = []
        self._gt_annotations = []
        self._detections = {iou_type: [] for iou_type in IOU_TYPES}
        self._image_ids = set()
        self._seen_classes = set()
        self._results = None

    def _category(self, class_id: int) -> int:
        if self.category_ids is None:
            return int(class_id)
        if not 1 <= class_id <= len(self.category_ids):
            raise ValueError(
                f"class id {class_id} is outside 1..{len(self.category_ids)} (category_ids)"
            )
        return self.category_ids[class_id - 1]

    # === Accumulation ===
    def add(self, image_id: int, gt, detections, *, image_size=None):
        """Adds one image.

        Args:
            image_id: int, unique per image (with `from_coco_json`: the file's id).
            gt: dict of numpy arrays for one image, at its original size:
                "boxes" float32 [M, 4] xyxy pixels, "classes" int32 [M] (1..K;
                rows with 0 are padding and skipped), "masks" uint8 [M, H, W],
                optional "is_crowd" bool [M]; for keypoints "keypoints" float32
                [M, K, 3] (x, y, v). M may be 0. Ignored (may be None) with
                `from_coco_json`.
            detections: dict of numpy arrays, already truncated to the valid
                detections: "boxes" float32 [N, 4] xyxy pixels of the same image,
                "scores" float32 [N], "classes" int32 [N] (1..K), "masks" uint8
                [N, H, W] pasted into the image, optional "mask_scores" [N]
                (segm ranking), for keypoints "keypoints" [N, K, 3] (x, y,
                score). N may be 0.
            image_size: (H, W); needed only when neither gt nor detections has masks.
        """
        image_id = int(image_id)
        if image_id in self._image_ids:
            raise ValueError(f"image_id {image_id} was added twice")
        self._results = None
        height, width = self._image_size(image_id, gt, detections, image_size)
        self._image_ids.add(image_id)
        if self._coco_gt is None:
            self._images.append({"id": image_id, "height": height, "width": width})
            self._add_gt(image_id, gt)
        self._add_detections(image_id, detections, (height, width))

    def _image_size(self, image_id, gt, detections, image_size):
        if self._coco_gt is not None:
            if image_id not in self._coco_gt.imgs:
                raise ValueError(f"image_id {image_id} is not in the COCO annotation file")
            info = self._coco_gt.imgs[image_id]
            return int(info["height"]), int(info["width"])
        if image_size is not None:
            return int(image_size[0]), int(image_size[1])
        for source in (gt, detections):
            if source is not None and source.get("masks") is not None:
                shape = np.shape(source["masks"])
                return int(shape[-2]), int(shape[-1])
        raise ValueError(f"image {image_id}: no masks to take its size from; pass image_size=(H, W)")

    def _add_gt(self, image_id, gt):
        if gt is None:
            raise ValueError(f"image {image_id}: gt is required (or use from_coco_json)")
        classes = np.asarray(gt["classes"], dtype=np.int64).reshape(-1)
        boxes = xyxy_to_xywh(gt["boxes"])
        masks = gt.get("masks")
        crowd = np.asarray(gt.get("is_crowd", np.zeros(len(classes), bool)), bool).reshape(-1)
        if not (len(boxes) == len(classes) == len(crowd)):
            raise ValueError(f"image {image_id}: gt boxes/classes/is_crowd lengths differ")
        keep = classes > 0
        points = None
        if "keypoints" in self.iou_types:
            points = self._keypoint_array(gt.get("keypoints"), len(classes), image_id, "gt")
        rles = encode_masks(np.asarray(masks)[keep]) if masks is not None else None
        areas = (np.asarray(masks)[keep] != 0).sum(axis=(1, 2)) if masks is not None else None
        for j, i in enumerate(np.flatnonzero(keep)):
            annotation = {
                "id": len(self._gt_annotations) + 1,  # COCOeval treats id 0 as "unmatched"
                "image_id": image_id,
                "category_id": self._category(int(classes[i])),
                "bbox": boxes[i].tolist(),
                "iscrowd": int(crowd[i]),
            }
            if rles is not None:
                annotation["segmentation"] = rles[j]
                annotation["area"] = float(areas[j])
            else:
                annotation["area"] = float(boxes[i, 2] * boxes[i, 3])
            if points is not None:
                annotation["keypoints"] = coco_keypoints(points[i])
                annotation["num_keypoints"] = int(np.count_nonzero(points[i, :, 2] > 0))
            self._gt_annotations.append(annotation)
            self._seen_classes.add(int(classes[i]))

    def _keypoint_array(self, points, count, image_id, what):
        """float64 [count, K, 3] keypoints, K the same for every image."""
        if points is None:
            raise ValueError(f"image {image_id}: {what} needs 'keypoints' [N, K, 3] for "
                             "keypoint evaluation")
        points = np.asarray(points, np.float64)
        if points.ndim != 3 or points.shape[0] != count or points.shape[2] != 3:
            raise ValueError(f"image {image_id}: {what} keypoints have shape {points.shape}, "
                             f"expected [{count}, K, 3]")
        if self._num_keypoints is None:
            self._num_keypoints = points.shape[1]
        elif points.shape[1] != self._num_keypoints:
            raise ValueError(f"image {image_id}: {what} has {points.shape[1]} keypoints, earlier "
                             f"images {self._num_keypoints}")
        return points

    def _add_detections(self, image_id, detections, size):
        if detections is None:
            return
        classes = np.asarray(detections["classes"], dtype=np.int64).reshape(-1)
        scores = np.asarray(detections["scores"], dtype=np.float64).reshape(-1)
        boxes = xyxy_to_xywh(detections["boxes"])
        if not (len(boxes) == len(classes) == len(scores)):
            raise ValueError(f"image {image_id}: detection boxes/scores/classes lengths differ")
        mask_scores = detections.get("mask_scores")
        mask_scores = scores if mask_scores is None else (
            np.asarray(mask_scores, np.float64).reshape(-1))
        if len(mask_scores) != len(scores):
            raise ValueError(f"image {image_id}: detection mask_scores/scores lengths differ")
        points = None
        if "keypoints" in self.iou_types:
            points = self._keypoint_array(detections.get("keypoints"), len(classes), image_id,
                                          "detections")
        keep = np.flatnonzero(classes > 0)
        rles = None
        if "segm" in self.iou_types:
            masks = detections.get("masks")
            if masks is None:
                raise ValueError(f"image {image_id}: detections need 'masks' for segm evaluation")
            masks = np.asarray(masks)
            if masks.shape[0] != len(classes) or tuple(masks.shape[1:]) != size:
                raise ValueError(
                    f"image {image_id}: detection masks have shape {masks.shape}, expected "
                    f"[{len(classes)}, {size[0]}, {size[1]}] (pasted into the original image)"
                )
            rles = encode_masks(masks[keep])
        for j, i in enumerate(keep):
            category = self._category(int(classes[i]))
            self._seen_classes.add(int(classes[i]))
            score = float(scores[i])
            self._detections["bbox"].append(
                {"image_id": image_id, "category_id": category,
                 "bbox": boxes[i].tolist(), "score": score})
            if rles is not None:
                self._detections["segm"].append(
                    {"image_id": image_id, "category_id": category,
                     "segmentation": rles[j], "score": float(mask_scores[i])})
            if points is not None:
                self._detections["keypoints"].append(
                    {"image_id": image_id, "category_id": category,
                     "keypoints": coco_keypoints(points[i]), "score": score})

    # === Evaluation ===
    def _ground_truth(self) -> COCO:
        if self._coco_gt is not None:
            return self._coco_gt
        if self.category_ids is not None:
            ids = list(range(1, len(self.category_ids) + 1))
        else:
            ids = sorted(self._seen_classes)
        categories = [
            {"id": self._category(k),
             "name": self.class_names[k - 1] if self.class_names and k <= len(self.class_names)
             else f"class_{k}"}
            for k in ids
        ]
        coco = COCO()
        coco.dataset = {"images": list(self._images), "annotations": list(self._gt_annotations),
                        "categories": categories}
        _quiet(coco.createIndex)
        return coco

    def _load_results(self, coco_gt: COCO, results: list) -> COCO:
        if results:
            return _quiet(coco_gt.loadRes, [dict(r) for r in results])
        empty = COCO()  # loadRes cannot take an empty list
        empty.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                         "categories": list(coco_gt.dataset["categories"])}
        _quiet(empty.createIndex)
        return empty

    def compute(self) -> dict:
        """Runs COCOeval; returns metrics in 0..1 (nan where COCOeval has no ground truth).

        Keys: for prefix in (box, mask): `{prefix}_ap`, `_ap50`, `_ap75`,
        `_ap_small`, `_ap_medium`, `_ap_large` (COCO area ranges, pixels^2:
        < 32^2, 32^2..96^2, > 96^2), and `per_class_{prefix}_ap`: {name: AP};
        keypoints: `keypoint_ap`, `_ap50`, `_ap75`, `_ap_medium`, `_ap_large`
        (COCO has no small range for keypoints) and `per_class_keypoint_ap`.
        """
        if not self._image_ids:
            raise ValueError("InstanceEvaluator.compute(): no images were added")
        coco_gt = self._ground_truth()
        image_ids = sorted(self._image_ids)
        results = {}
        self._summaries = {}
        self.coco_evals = {}  # {"box"|"mask": accumulated COCOeval}, for evaluation.plots
        for iou_type in self.iou_types:
            prefix = IOU_TYPES[iou_type]
            coco_dt = self._load_results(coco_gt, self._detections[iou_type])
            evaluator = COCOeval(coco_gt, coco_dt, iou_type)
            evaluator.params.imgIds = image_ids
            if iou_type == "keypoints":
                evaluator.params.kpt_oks_sigmas = self._sigmas(coco_gt)
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
            self._summaries[iou_type] = text.getvalue()
            self.coco_evals[prefix] = evaluator
            stat_index = _KEYPOINT_STAT_INDEX if iou_type == "keypoints" else _STAT_INDEX
            for suffix, index in stat_index.items():
                results[f"{prefix}_{suffix}"] = _nan_if_missing(evaluator.stats[index])
            results[f"per_class_{prefix}_ap"] = self._per_class_ap(evaluator)
        self._results = results
        return dict(results)

    def _sigmas(self, coco_gt: COCO) -> np.ndarray:
        num = self._num_keypoints
        if num is None:  # from_coco_json and no detection keypoints: K from the file
            lengths = [len(a["keypoints"]) // 3 for a in coco_gt.dataset["annotations"]
                       if a.get("keypoints")]
            if not lengths:
                raise ValueError("keypoint evaluation: no ground truth has keypoints")
            num = lengths[0]
        return keypoint_sigmas(num, self.keypoint_sigmas)

    def _per_class_ap(self, evaluator: COCOeval) -> dict:
        # precision: [T iou thresholds, R recall points, K categories, A areas, M max dets]
        precision = evaluator.eval["precision"]
        if self.category_ids is not None:
            classes = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        else:
            classes = {cid: cid for cid in evaluator.params.catIds}
        names = {cid: (self.class_names[k - 1] if self.class_names and k <= len(self.class_names)
                       else f"class_{k}") for cid, k in classes.items()}
        per_class = {}
        for k, category_id in enumerate(evaluator.params.catIds):
            values = precision[:, :, k, 0, -1]
            values = values[values > -1]
            name = names[category_id]
            per_class[name] = float(np.mean(values)) if values.size else float("nan")
        return per_class

    def table(self) -> str:
        """A text table: box, mask (and keypoint) AP, AP50, AP75, APs, APm, APl, and per class AP."""
        results = self._results if self._results is not None else self.compute()

        def fmt(value):
            return "    -" if value is None or math.isnan(value) else f"{value:5.3f}"

        lines = [f"{'':8} {'AP':>5} {'AP50':>5} {'AP75':>5} {'APs':>5} {'APm':>5} {'APl':>5}"]
        for iou_type in self.iou_types:
            prefix = IOU_TYPES[iou_type]
            values = [results.get(f"{prefix}_{s}") for s in _STAT_INDEX]
            lines.append(f"{prefix:8} " + " ".join(fmt(v) for v in values))
        per_class = {IOU_TYPES[t]: results[f"per_class_{IOU_TYPES[t]}_ap"] for t in self.iou_types}
        names = list(next(iter(per_class.values())).keys()) if per_class else []
        if names:
            width = max(5, *(len(n) for n in names))
            lines.append("")
            columns = {p: max(8, len(p) + 3) for p in per_class}
            lines.append(f"{'class':{width}} "
                         + " ".join(f"{p + '_ap':>{columns[p]}}" for p in per_class))
            for name in names:
                lines.append(f"{name:{width}} " + " ".join(
                    f"{fmt(per_class[p].get(name)):>{columns[p]}}" for p in per_class))
        return "\n".join(lines)

    def to_json(self) -> str:
        """The scalar metrics as one JSON object (nan written as null)."""
        results = self._results if self._results is not None else self.compute()
        scalars = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in results.items() if not isinstance(v, dict)}
        return json.dumps(scalars)
