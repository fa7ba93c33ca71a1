"""COCO person_keypoints trees written as COCO does, for the keypoint tests."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from segzoo.data.keypoints import COCO_PERSON_KEYPOINTS

# COCO's person category as in person_keypoints_val2017.json (skeleton 1-based).
PERSON = {
    "id": 1, "name": "person", "supercategory": "person",
    "keypoints": list(COCO_PERSON_KEYPOINTS),
    "skeleton": [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7],
                 [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5],
                 [4, 6], [5, 7]],
}  # fmt: skip


def person_keypoints(rng, box):
    """A flat COCO keypoint list [x1, y1, v1, ...] (17 points) inside `box` xywh."""
    x, y, w, h = box
    points = []
    for _ in range(17):
        v = int(rng.choice([0, 1, 2], p=[0.2, 0.2, 0.6]))
        if v == 0:
            points += [0, 0, 0]
        else:
            points += [int(x + rng.uniform(0, w)), int(y + rng.uniform(0, h)), v]
    return points


def make_coco_keypoints(root, split="val2017", seed=0, with_instances=True):
    """DIR/annotations/person_keypoints_{split}.json (+ instances_{split}.json) and images.

    Images: 10 (two people: one with keypoints, one with none), 20 (no people:
    a negative), 30 (one person, keypoints listed with num_keypoints). Returns
    the person_keypoints JSON as a dict.
    """
    rng = np.random.default_rng(seed)
    images = [
        {"id": 10, "file_name": "000010.jpg", "height": 48, "width": 64},
        {"id": 20, "file_name": "000020.png", "height": 40, "width": 40},
        {"id": 30, "file_name": "000030.png", "height": 36, "width": 50},
    ]
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for image in images:
        pixels = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, image["file_name"]))
    annotations = []
    for ann_id, (image_id, box, with_points) in enumerate(
        [(10, [4, 6, 20, 30], True), (10, [30, 10, 25, 30], False), (30, [10, 5, 30, 28], True)],
        start=1,
    ):
        x, y, w, h = box
        ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
               "bbox": box, "area": w * h,
               "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}  # fmt: skip
        points = person_keypoints(rng, box) if with_points else [0] * 51
        ann["keypoints"] = points
        ann["num_keypoints"] = int(np.count_nonzero(np.asarray(points[2::3]) > 0))
        annotations.append(ann)
    data = {"images": images, "annotations": annotations, "categories": [PERSON]}
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", f"person_keypoints_{split}.json"), "w") as f:
        json.dump(data, f)
    if with_instances:
        plain = {**data, "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
                 "annotations": [{k: v for k, v in a.items()
                                  if k not in ("keypoints", "num_keypoints")}
                                 for a in annotations]}  # fmt: skip
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(plain, f)
    return data


def write_shapes_coco(root, splits=(("train", 32), ("val", 8)), image_size=96):
    """The built-in shapes (with keypoints) written as a COCO-layout tree, as COCO tools write it:
    DIR/{split}/NAME.png, DIR/annotations/instances_{split}.json and person_keypoints_{split}.json
    (every category with the 4 extreme-point names and the 1-based skeleton), RLE masks."""
    from pycocotools import mask as mask_utils

    import segzoo.data
    from segzoo.data import shapes

    categories = [
        {"id": k + 1, "name": name, "supercategory": "shape",
         "keypoints": list(shapes.KEYPOINT_NAMES),
         "skeleton": [[a + 1, b + 1] for a, b in shapes.SKELETON]}
        for k, name in enumerate(shapes.CLASS_NAMES[1:])
    ]  # fmt: skip
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, count in splits:
        ds = segzoo.data.load("shapes", split, task="instance", keypoints=True,
                              num_images=count, image_size=image_size)
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for element in ds.as_numpy_iterator():
            image_id = int(element["image_id"]) + 1
            name = f"{image_id:06d}.png"
            Image.fromarray(element["image"]).save(os.path.join(root, split, name))
            height, width = element["image"].shape[:2]
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
            for box, cls, mask, points in zip(element["boxes"], element["classes"],
                                              element["masks"], element["keypoints"],
                                              strict=True):
                rle = mask_utils.encode(np.asfortranarray(mask))
                rle["counts"] = rle["counts"].decode()
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls),
                    "iscrowd": 0, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": int(mask.sum()),
                    "segmentation": rle, "keypoints": points.reshape(-1).tolist(),
                    "num_keypoints": int((points[:, 2] > 0).sum())})  # fmt: skip
        data = {"images": images, "annotations": annotations, "categories": categories}
        with open(os.path.join(root, "annotations", f"person_keypoints_{split}.json"), "w") as f:
            json.dump(data, f)
        plain = {**data, "categories": [{k: v for k, v in c.items()
                                         if k not in ("keypoints", "skeleton")}
                                        for c in categories]}  # fmt: skip
        with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
            json.dump(plain, f)
