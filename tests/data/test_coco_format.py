"""`coco` as the format: split discovery, exported layouts, TIFF images (generated trees)."""

import json
import os

import numpy as np
import pytest
import tifffile
from pycocotools.coco import COCO

from segzoo.data import default_splits, get_info, load
from tests.data.coco_tree import make_coco_tree, rle_uncompressed


@pytest.mark.parametrize("release", [False, True])
def test_both_split_namings_load_and_match_pycocotools(tmp_path, release):
    paths = make_coco_tree(tmp_path, 6, 3, size=48, release=release)
    info = get_info("coco", tmp_path)
    train, val = ("train2017", "val2017") if release else ("train", "val")
    assert info.splits == tuple(sorted((train, val)))
    assert default_splits(info) == (train, val)
    assert info.category_ids == (3, 7, 12)
    assert info.class_names == ("circle", "rectangle", "triangle")
    reference = COCO(paths[val])
    elements = list(load("coco", val, tmp_path).as_numpy_iterator())
    assert [int(e["image_id"]) for e in elements] == sorted(reference.imgs)
    styles = set()
    for element in elements:
        anns = reference.loadAnns(reference.getAnnIds(imgIds=[int(element["image_id"])]))
        styles |= {type(a["segmentation"]).__name__ for a in anns}
        assert element["masks"].shape == (len(anns), 48, 48)
        for row, ann in enumerate(anns):
            np.testing.assert_array_equal(element["masks"][row], reference.annToMask(ann))
            label = [3, 7, 12].index(ann["category_id"]) + 1
            assert element["classes"][row] == label
    assert styles == {"list", "dict"}  # polygons and RLE in one split


def test_images_without_objects_are_kept(tmp_path):
    paths = make_coco_tree(tmp_path, 16, 2, size=32, seed=3)
    data = json.load(open(paths["train"]))
    with_objects = {a["image_id"] for a in data["annotations"]}
    negatives = [i["id"] for i in data["images"] if i["id"] not in with_objects]
    assert negatives  # the generator writes some
    elements = {int(e["image_id"]): e for e in load("coco", "train", tmp_path).as_numpy_iterator()}
    assert len(elements) == 16
    for image_id in negatives:
        assert elements[image_id]["boxes"].shape == (0, 4)


def test_missing_split_lists_the_annotation_files(tmp_path):
    make_coco_tree(tmp_path, 2, 1, size=32)
    (tmp_path / "annotations" / "person_keypoints_train.json").write_text("{}")
    with pytest.raises(ValueError, match=r"instances_train2017\.json.*does not exist.*"
                       r"instances_train\.json.*instances_val\.json.*person_keypoints_train"):
        load("coco", "train2017", tmp_path)


def test_no_instances_file_lists_what_is_there(tmp_path):
    os.makedirs(tmp_path / "annotations")
    (tmp_path / "annotations" / "result.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no annotations/instances_\{split\}\.json.*result\.json"):
        get_info("coco", tmp_path)


def test_default_splits_rules():
    assert default_splits(("train", "val", "test")) == ("train", "val")
    assert default_splits(("train2017", "val2017", "train", "val")) == ("train2017", "val2017")
    assert default_splits(("train", "valid")) == ("train", "valid")
    assert default_splits(("default",)) == (None, None)
    assert default_splits(("train",)) == ("train", None)


def test_sixteen_bit_tiff_images_and_images_folder(tmp_path):
    """A microscopy-style COCO set: 16-bit TIFFs in DIR/images/ (the JSON's file_name)."""
    os.makedirs(tmp_path / "annotations")
    os.makedirs(tmp_path / "images")
    rng = np.random.default_rng(0)
    pixels = rng.integers(200, 900, (20, 24)).astype(np.uint16)
    pixels[5:12, 6:14] = 3000
    tifffile.imwrite(tmp_path / "images" / "cell.tif", pixels)
    mask = np.zeros((20, 24), np.uint8)
    mask[5:12, 6:14] = 1
    data = {
        "images": [{"id": 1, "file_name": "cell.tif", "height": 20, "width": 24}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [6, 5, 8, 7],
                         "iscrowd": 0, "area": 56, "segmentation": rle_uncompressed(mask)}],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (tmp_path / "annotations" / "instances_train.json").write_text(json.dumps(data))
    (element,) = load("coco", "train", tmp_path).as_numpy_iterator()
    assert element["image"].shape == (20, 24, 3) and element["image"].dtype == np.uint8
    assert element["image"][8, 10, 0] == 255 and element["image"].min() == 0
    np.testing.assert_array_equal(element["masks"][0], mask)
