"""`segzoo predict` over many images: semantic and instance outputs, tiles, TTA, resume.

    predictor = make_predictor(model, tile_size=512, overlap=64, tta=parse_tta("flip"))
    code = predict_paths(predictor, expand_inputs(["photos/"]), "out/", resume=True)

Per input NAME (DESIGN.md "CLI"), each written atomically (`inputs.atomic_save`):
- semantic: `NAME.png` (class ids, palette PNG), `NAME_overlay.png`;
- instance: `NAME.png` (instance ids, uint8 or uint16; value i = detection i of
  the JSON, 1-based; the higher score wins where masks overlap), `NAME.json`
  `{"detections": [{"box": [x1, y1, x2, y2], "class_id", "class_name", "score",
  "mask": {"size": [H, W], "counts": COCO RLE string}, ...}]}` sorted by score
  (plus "mask_score" / "keypoints" when the model gives them),
  `NAME_overlay.png`.
An image that cannot be read or predicted is reported at the end with its
reason; the others are written and the return code is 1 (0 when all went well).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from PIL import Image

from segzoo.errors import ArgumentError, arg
from segzoo.inference import inputs
from segzoo.inference.instances import Instances
from segzoo.inference.tiling import (
    check_tiling,
    detections_to_instances,
    sliding_window_labels,
    tiled_instances,
)
from segzoo.inference.tta import probability_fn, with_tta

SEMANTIC_OUTPUTS = (".png", "_overlay.png")
INSTANCE_OUTPUTS = (".png", ".json", "_overlay.png")
_OVERLAY_ROWS = 1024  # overlays are blended this many rows at a time (bounded scratch memory)


class Predictor:
    """A model with its inference options; `predict(images uint8 [B, H, W, 3])` -> list of
    labels uint8 [H, W] (semantic) or `Instances` (instance).

    Args:
        model: a segzoo model (`task`, `class_names`, instance: `category_ids`).
        tile_size, overlap: sliding-window tiles (None: whole images).
        tta: a `TTAConfig` (semantic models only) or None.
        score_threshold: instance detections kept at or above this score.
        tile_batch: tiles per model call.
    """

    def __init__(self, model, *, tile_size=None, overlap=0, tta=None, score_threshold=0.5,
                 tile_batch=4):
        if tile_size is not None:
            tile_size, overlap = check_tiling(tile_size, overlap)
        if tta is not None and model.task != "semantic":
            raise ArgumentError(f"{arg('tta')} applies to semantic models; this checkpoint is an instance model")
        self.model, self.tile_size, self.overlap = model, tile_size, overlap
        self.tta, self.score_threshold, self.tile_batch = tta, float(score_threshold), int(tile_batch)
        self.task = model.task
        self.outputs = INSTANCE_OUTPUTS if self.task == "instance" else SEMANTIC_OUTPUTS
        if self.task == "semantic":
            self.fn = with_tta(probability_fn(model), tta)

    @property
    def batchable(self) -> bool:
        """Whether equal-size images may go through the model together."""
        return self.task == "semantic"

    def _fits_one_tile(self, shape) -> bool:
        return self.tile_size is None or (shape[0] <= self.tile_size and shape[1] <= self.tile_size)

    def predict(self, images) -> list:
        images = np.asarray(images)
        if self.task == "instance":
            return [self.instances(image) for image in images]
        if self._fits_one_tile(images.shape[1:3]):  # tiled == untiled here, by construction
            probabilities = self.fn(images.astype(np.float32))
            return [p.argmax(-1).astype(np.uint8 if p.shape[-1] <= 256 else np.int32)
                    for p in probabilities]
        return [sliding_window_labels(self.fn, image, self.tile_size, self.overlap,
                                      batch_size=self.tile_batch) for image in images]

    def labels(self, image) -> np.ndarray:
        """Class ids [H, W] of one image uint8 [H, W, 3]."""
        return self.predict(np.asarray(image)[None])[0]

    def detect(self, image) -> dict:
        """The model's valid detections of one whole image (numpy)."""
        from segzoo.inference.predictor import predict_instances

        return predict_instances(self.model, image)

    def instances(self, image) -> Instances:
        """`Instances` of one image (tiled when it exceeds the tile), scores >= threshold."""
        image = np.asarray(image)
        if self._fits_one_tile(image.shape):
            return detections_to_instances(self.detect(image), self.score_threshold,
                                           image_size=image.shape[:2])
        return tiled_instances(self.detect, image, self.tile_size, self.overlap,
                               score_threshold=self.score_threshold)

    def detections(self, image) -> dict:
        """What `InstanceEvaluator.add` takes: boxes, scores, classes, masks [N, H, W]."""
        found = self.instances(image)
        return {"boxes": found.boxes, "scores": found.scores, "classes": found.classes,
                "masks": found.masks()}


# === Writing ===
def save_label_png(labels, path) -> None:
    """Class ids [H, W] as a palette PNG (values = class ids, colours = VOC palette)."""
    from segzoo.visualize import voc_palette

    image = Image.fromarray(np.asarray(labels).astype(np.uint8))
    image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path, format="PNG")


def semantic_overlay_in_strips(image, labels) -> np.ndarray:
    from segzoo.visualize import semantic_overlay

    out = np.empty_like(image)
    for top in range(0, image.shape[0], _OVERLAY_ROWS):
        rows = slice(top, top + _OVERLAY_ROWS)
        out[rows] = semantic_overlay(image[rows], labels[rows])
    return out


def write_semantic(image, labels, stem, out_dir) -> None:
    overlay = semantic_overlay_in_strips(image, labels)
    inputs.atomic_save(os.path.join(out_dir, f"{stem}_overlay.png"),
                       lambda tmp: Image.fromarray(overlay).save(tmp, format="PNG"))
    inputs.atomic_save(os.path.join(out_dir, f"{stem}.png"), lambda tmp: save_label_png(labels, tmp))


def detection_records(instances: Instances, model) -> list[dict]:
    """The JSON detections of `Instances` (see module docstring)."""
    # Class k (1..K) is foreground class k - 1: its dataset id and name.
    category_ids, names = model.category_ids, model.foreground_class_names
    rles = instances.rles()
    records = []
    for i in range(len(instances)):
        cls = int(instances.classes[i])
        record = {"box": [float(v) for v in instances.boxes[i]],
                  "class_id": int(category_ids[cls - 1]), "class_name": names[cls - 1],
                  "score": float(instances.scores[i]), "mask": rles[i]}
        if "mask_scores" in instances.extras:
            record["mask_score"] = float(instances.extras["mask_scores"][i])
        if "keypoints" in instances.extras:
            record["keypoints"] = [[float(v) for v in point] for point in instances.extras["keypoints"][i]]
        records.append(record)
    return records


def write_instances(image, instances: Instances, stem, out_dir, model) -> None:
    from segzoo.visualize import instance_overlay

    records = detection_records(instances, model)

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump({"detections": records}, f, indent=2)

    inputs.atomic_save(os.path.join(out_dir, f"{stem}.json"), write_json)
    overlay = instance_overlay(image, instances.boxes, instances.crops, instances.classes,
                               instances.scores, model.class_names,
                               keypoints=instances.extras.get("keypoints"),
                               skeleton=model.keypoint_skeleton or ())
    inputs.atomic_save(os.path.join(out_dir, f"{stem}_overlay.png"),
                       lambda tmp: Image.fromarray(overlay).save(tmp, format="PNG"))
    ids = instances.id_map()
    ids = ids.astype(np.uint8) if ids.max(initial=0) < 256 else ids
    inputs.atomic_save(os.path.join(out_dir, f"{stem}.png"),
                       lambda tmp: Image.fromarray(ids).save(tmp, format="PNG"))


def _describe(predictor, result) -> str:
    if predictor.task == "instance":
        return f"{len(result)} detections"
    names = predictor.model.class_names
    return ", ".join(names[c] if c < len(names) else str(c) for c in np.unique(result))


# === The folder run ===
def predict_paths(predictor: Predictor, paths, out_dir, *, read_image, batch_size=4, resume=False,
                  stream=None, verbose=None) -> int:
    """Predicts every path into `out_dir`; returns 0, or 1 when some image failed.

    Args:
        predictor: a `Predictor`.
        paths: image files (`inputs.expand_inputs`).
        read_image: `read_image(path) -> uint8 [H, W, 3]` (raises for a bad file).
        batch_size: equal-size images per model call (semantic, untiled images).
        resume: skip inputs whose outputs all exist already.
        stream: where progress and the failure report go (stderr).
        verbose: one line per image on stdout (default: when at most 10 images).
    """
    stream = stream or sys.stderr
    os.makedirs(out_dir, exist_ok=True)
    paths = list(paths)
    todo = paths
    if resume:
        todo = [p for p in paths
                if not inputs.outputs_exist(out_dir, inputs.output_stem(p), predictor.outputs)]
        print(f"resume: {len(paths) - len(todo)} of {len(paths)} images already written, "
              f"{len(todo)} to go", file=stream)
    verbose = len(todo) <= 10 if verbose is None else verbose
    failures = inputs.Failures()
    batches = inputs.equal_size_batches(todo, read_image, batch_size if predictor.batchable else 1,
                                        failures)
    written = 0
    with inputs.Progress(len(todo), "predict", stream=stream) as progress:
        reported = 0
        for batch in batches:
            read_failures = len(failures) - reported  # files that failed to read before this batch
            try:
                results = predictor.predict(batch.images)
                for path, image, result in zip(batch.paths, batch.images, results, strict=True):
                    stem = inputs.output_stem(path)
                    if predictor.task == "instance":
                        write_instances(image, result, stem, out_dir, predictor.model)
                    else:
                        write_semantic(image, result, stem, out_dir)
                    written += 1
                    if verbose:
                        print(f"{path}: {_describe(predictor, result)} -> "
                              f"{os.path.join(out_dir, stem)}{', '.join(predictor.outputs)}")
            except Exception as error:  # one failing image must not stop a folder
                for path in batch.paths:
                    if not inputs.outputs_exist(out_dir, inputs.output_stem(path), predictor.outputs):
                        failures.add(path, f"{type(error).__name__}: {error}")
            progress.update(len(batch.paths) + read_failures)
            reported = len(failures)
        progress.update(len(failures) - reported)
    failures.report(total=len(todo), stream=stream)
    print(f"segzoo predict: {written} of {len(todo)} images written to {out_dir}"
          + (f"; {len(failures)} failed (listed above)" if failures else ""), file=stream)
    return 1 if failures else 0
