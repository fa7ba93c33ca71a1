import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segzoo.data import get_info, load

CATEGORIES = [{"id": 12, "name": "bird"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def _rle_compressed(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _rle_uncompressed(mask):
    flat = mask.T.ravel()  # column-major
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _make_coco(root, split="val2017", extra_annotations=()):
    images = [
        {"id": 10, "file_name": "a.jpg", "height": 30, "width": 40},
        {"id": 20, "file_name": "sub/negative.png", "height": 32, "width": 32},
        {"id": 5, "file_name": "c.png", "height": 24, "width": 20},
    ]
    rng = np.random.default_rng(0)
    for image in images:
        path = root / split / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (image["height"], image["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    crowd = np.zeros((30, 40), np.uint8)
    crowd[20:28, 5:30] = 1
    blob = np.zeros((24, 20), np.uint8)
    blob[4:10, 3:15] = 1
    blob[12:20, 8:12] = 1
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 7, "iscrowd": 0, "bbox": [2, 3, 10, 6],
         "segmentation": [[2, 3, 12, 3, 12, 9, 2, 9]], "area": 60},
        {"id": 2, "image_id": 10, "category_id": 12, "iscrowd": 1, "bbox": [5, 20, 25, 8],
         "segmentation": _rle_uncompressed(crowd), "area": 200},
        {"id": 3, "image_id": 5, "category_id": 3, "iscrowd": 0, "bbox": [3, 4, 12, 16],
         "segmentation": _rle_compressed(blob), "area": 104},
        # reaches outside the image: clipped to [30, 10, 40, 30]
        {"id": 4, "image_id": 10, "category_id": 3, "iscrowd": 0, "bbox": [30, 10, 20, 25],
         "segmentation": [[30, 10, 45, 10, 45, 35, 30, 35], [31, 11, 33, 11]], "area": 200},
        # entirely outside: skipped
        {"id": 5, "image_id": 5, "category_id": 3, "iscrowd": 0, "bbox": [50, 50, 5, 5],
         "segmentation": [[50, 50, 55, 50, 55, 55]], "area": 12},
        # empty polygon: skipped
        {"id": 6, "image_id": 5, "category_id": 7, "iscrowd": 0, "bbox": [1, 1, 3, 3],
         "segmentation": [[]], "area": 0},
    ] + list(extra_annotations)  # fmt: skip
    os.makedirs(root / "annotations", exist_ok=True)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )
    return path


def test_coco_elements_against_pycocotools(tmp_path):
    path = _make_coco(tmp_path)
    info = get_info("coco", tmp_path)
    assert info.task == "instance" and info.splits == ("val2017",)
    assert info.category_ids == (3, 7, 12) and info.class_names == ("cat", "dog", "bird")
    with pytest.warns(UserWarning, match=r"clipped 1 box.*skipped 1 .*empty box and 1 "):
        ds = load("coco", "val2017", tmp_path)
    elements = {int(e["image_id"]): {k: v.numpy() for k, v in e.items()} for e in ds}
    assert list(elements) == [5, 10, 20]  # sorted ids, the negative kept
    reference = COCO(str(path))
    a = elements[10]
    assert a["image"].shape == (30, 40, 3) and a["image"].dtype == np.uint8
    np.testing.assert_array_equal(a["classes"], [2, 3, 1])  # dog, bird, cat
    np.testing.assert_array_equal(a["is_crowd"], [False, True, False])
    np.testing.assert_allclose(a["boxes"], [[2, 3, 12, 9], [5, 20, 30, 28], [30, 10, 40, 30]])
    for row, ann_id in enumerate([1, 2, 4]):
        np.testing.assert_array_equal(a["masks"][row], reference.annToMask(reference.anns[ann_id]))
    assert a["masks"][0].sum() > 0 and a["masks"][1].sum() == 200
    c = elements[5]
    np.testing.assert_array_equal(c["classes"], [1])
    np.testing.assert_array_equal(c["masks"][0], reference.annToMask(reference.anns[3]))
    negative = elements[20]
    assert negative["boxes"].shape == (0, 4) and negative["masks"].shape == (0, 32, 32)
    assert negative["classes"].dtype == np.int32 and negative["is_crowd"].dtype == bool


def test_annotation_with_missing_image(tmp_path):
    ghost = {"id": 99, "image_id": 777, "category_id": 3, "iscrowd": 0, "bbox": [0, 0, 2, 2],
             "segmentation": [[0, 0, 2, 0, 2, 2]]}  # fmt: skip
    _make_coco(tmp_path, extra_annotations=[ghost])
    with pytest.raises(ValueError, match=r"annotation 99 .*image_id 777"):
        load("coco", "val2017", tmp_path)


@pytest.mark.filterwarnings("ignore:coco")
def test_unknown_category_and_missing_file(tmp_path):
    bad = {"id": 98, "image_id": 10, "category_id": 4, "iscrowd": 0, "bbox": [0, 0, 2, 2],
           "segmentation": [[0, 0, 2, 0, 2, 2]]}  # fmt: skip
    _make_coco(tmp_path, extra_annotations=[bad])
    with pytest.raises(ValueError, match=r"annotation 98 .*category_id 4.*\[3, 7, 12\]"):
        load("coco", "val2017", tmp_path)
    _make_coco(tmp_path)
    os.remove(tmp_path / "val2017" / "c.png")
    with pytest.raises(ValueError, match=r"1 image file\(s\).*c\.png"):
        load("coco", "val2017", tmp_path)


def test_layout_errors(tmp_path):
    with pytest.raises(ValueError, match="needs data_dir"):
        load("coco", "val2017")
    with pytest.raises(ValueError, match="annotations"):
        load("coco", "val2017", tmp_path)
    _make_coco(tmp_path)
    with pytest.raises(ValueError, match="no split 'train2017'"):
        load("coco", "train2017", tmp_path)
