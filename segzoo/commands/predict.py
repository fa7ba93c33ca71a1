"""`segzoo predict --checkpoint CKPT IMAGE... --out DIR`.

Per input image NAME.EXT:
- semantic: `NAME.png`, class ids (uint8, palette PNG with the VOC colours) at
  the input's size; `NAME_overlay.png`, the VOC colours blended over the image.
- instance: `NAME.png`, uint16/uint8 instance ids at the input size (value i =
  detection i of NAME.json, 1-based; 0 = none; where masks overlap the
  higher-scoring detection wins); `NAME.json`, `{"detections": [{"box":
  [x1, y1, x2, y2], "class_id": the dataset's id (model.category_ids),
  "class_name", "score"}, ...]}` sorted by score; `NAME_overlay.png`.
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from segzoo.data.readers import read_image


def save_label_png(labels: np.ndarray, path: str) -> None:
    """Class ids [H, W] as a palette PNG (values = class ids, colours = VOC palette)."""
    from segzoo.visualize import voc_palette

    image = Image.fromarray(labels.astype(np.uint8))  # mode "L"; putpalette makes it "P"
    image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path)


def instance_id_map(masks: np.ndarray, scores: np.ndarray, shape) -> np.ndarray:
    """[H, W] ids: i + 1 where detection i's mask is set; higher score wins on overlap."""
    ids = np.zeros(shape, dtype=np.uint16)
    for i in np.argsort(scores, kind="stable"):  # low to high: the best is painted last
        ids[np.asarray(masks[i]).astype(bool)] = i + 1
    return ids


def predict_semantic(model, image, name, out_dir):
    from segzoo.inference import predict_labels
    from segzoo.visualize import semantic_overlay

    labels = predict_labels(model, image)
    save_label_png(labels, os.path.join(out_dir, f"{name}.png"))
    Image.fromarray(semantic_overlay(image, labels)).save(os.path.join(out_dir, f"{name}_overlay.png"))
    return labels


def predict_instance(model, image, name, out_dir, score_threshold=0.5):
    from segzoo.inference import predict_instances
    from segzoo.visualize import instance_overlay

    out = predict_instances(model, image)
    scores = out["scores"]
    keep = np.argsort(-scores, kind="stable")
    keep = keep[scores[keep] >= score_threshold]
    boxes, scores, classes, masks = (out[k][keep] for k in ("boxes", "scores", "classes", "masks"))
    # Class k (1..K) is foreground class k - 1: its dataset id and name.
    category_ids, names = model.category_ids, model.foreground_class_names
    detections = [
        {
            "box": [float(v) for v in boxes[i]],
            "class_id": int(category_ids[int(classes[i]) - 1]),
            "class_name": names[int(classes[i]) - 1],
            "score": float(scores[i]),
        }
        for i in range(len(keep))
    ]
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"detections": detections}, f, indent=2)
    ids = instance_id_map(masks, scores, image.shape[:2])
    Image.fromarray(ids.astype(np.uint8) if ids.max() < 256 else ids).save(
        os.path.join(out_dir, f"{name}.png"))
    overlay = instance_overlay(image, boxes, masks, classes, scores, model.class_names)
    Image.fromarray(overlay).save(os.path.join(out_dir, f"{name}_overlay.png"))
    return detections


def run(args) -> int:
    from segzoo.models.base import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    for path in args.images:
        image = read_image(path)
        name = os.path.splitext(os.path.basename(path))[0]
        if model.task == "instance":
            detections = predict_instance(model, image, name, args.out, args.score_threshold)
            print(f"{path}: {len(detections)} detections -> "
                  f"{os.path.join(args.out, name)}.png, {name}.json, {name}_overlay.png")
        else:
            labels = predict_semantic(model, image, name, args.out)
            present = [model.class_names[c] for c in np.unique(labels)]
            print(f"{path}: {', '.join(present)} -> {os.path.join(args.out, name)}.png")
    return 0
