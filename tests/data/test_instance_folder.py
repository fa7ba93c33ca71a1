"""`instance_folder`: instance-id PNG / TIFF folders (generated trees), 8- and 16-bit."""

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from segzoo.data import get_info, load
from segzoo.data.instance_folder import instances_of_ids


def _ids_map(height, width, ids_and_boxes):
    ids = np.zeros((height, width), np.uint16)
    for value, (x1, y1, x2, y2) in ids_and_boxes:
        ids[y1:y2, x1:x2] = value
    return ids


def _write_split(root, split, items, *, tiff=False, sixteen_bit_image=False):
    os.makedirs(root / split / "images", exist_ok=True)
    os.makedirs(root / split / "masks", exist_ok=True)
    rng = np.random.default_rng(0)
    for name, ids in items.items():
        h, w = ids.shape
        if sixteen_bit_image:
            tifffile.imwrite(root / split / "images" / f"{name}.tif",
                             rng.integers(100, 4000, (h, w)).astype(np.uint16))
        else:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / split / "images" / f"{name}.png")
        if tiff:
            tifffile.imwrite(root / split / "masks" / f"{name}.tif", ids)
        elif ids.max() > 255:
            Image.fromarray(ids.astype(np.uint16)).save(root / split / "masks" / f"{name}.png")
        else:
            Image.fromarray(ids.astype(np.uint8)).save(root / split / "masks" / f"{name}.png")


def _elements(root, split):
    return {int(e["image_id"]): e for e in load("instance_folder", split, root).as_numpy_iterator()}


def test_sixteen_bit_non_contiguous_ids_png_and_tiff(tmp_path):
    a = _ids_map(20, 24, [(7, (2, 3, 8, 9)), (1000, (10, 10, 20, 18)), (65535, (0, 0, 2, 2))])
    b = _ids_map(16, 16, [(3, (4, 4, 9, 12))])
    empty = np.zeros((12, 10), np.uint16)
    _write_split(tmp_path, "train", {"a": a, "b": b, "empty": empty})
    _write_split(tmp_path, "val", {"a": a}, tiff=True, sixteen_bit_image=True)
    info = get_info("instance_folder", tmp_path)
    assert info.task == "instance" and info.class_names == ("object",)
    assert info.splits == ("train", "val") and info.category_ids == (1,)
    train = _elements(tmp_path, "train")
    first = train[0]
    assert first["masks"].shape == (3, 20, 24) and first["image"].shape == (20, 24, 3)
    for row, value in enumerate([7, 1000, 65535]):  # increasing id order
        np.testing.assert_array_equal(first["masks"][row], (a == value).astype(np.uint8))
    np.testing.assert_array_equal(first["boxes"], [[2, 3, 8, 9], [10, 10, 20, 18], [0, 0, 2, 2]])
    np.testing.assert_array_equal(first["classes"], [1, 1, 1])
    assert not first["is_crowd"].any()
    assert train[2]["boxes"].shape == (0, 4) and train[2]["masks"].shape == (0, 12, 10)
    (val,) = _elements(tmp_path, "val").values()
    np.testing.assert_array_equal(val["masks"], first["masks"])
    assert val["image"].dtype == np.uint8 and val["image"].max() == 255


def test_eight_bit_ids_and_id_helper():
    ids = np.array([[0, 5, 5], [9, 9, 0]], np.int64)
    boxes, classes, masks = instances_of_ids(ids, {5: 2, 9: 1}.__getitem__)
    np.testing.assert_array_equal(boxes, [[1, 0, 3, 1], [0, 1, 2, 2]])
    np.testing.assert_array_equal(classes, [2, 1])
    np.testing.assert_array_equal(masks[1], [[0, 0, 0], [1, 1, 0]])


def test_class_files_name_each_instance(tmp_path):
    a = _ids_map(16, 16, [(2, (0, 0, 4, 4)), (5, (8, 8, 12, 12))])
    _write_split(tmp_path, "train", {"a": a})
    (tmp_path / "classes.txt").write_text("nucleus\ncell\n")
    os.makedirs(tmp_path / "train" / "classes")
    (tmp_path / "train" / "classes" / "a.json").write_text(json.dumps({"2": "cell", "5": "nucleus"}))
    info = get_info("instance_folder", tmp_path)
    assert info.class_names == ("nucleus", "cell")
    (element,) = _elements(tmp_path, "train").values()
    np.testing.assert_array_equal(element["classes"], [2, 1])
    # without classes.txt: names from the JSON files, sorted
    os.remove(tmp_path / "classes.txt")
    assert get_info("instance_folder", tmp_path).class_names == ("cell", "nucleus")


def test_bad_inputs_name_the_file(tmp_path):
    a = _ids_map(16, 16, [(2, (0, 0, 4, 4)), (5, (8, 8, 12, 12))])
    _write_split(tmp_path, "train", {"a": a, "b": a})
    os.remove(tmp_path / "train" / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"have no mask.*b\.png"):
        load("instance_folder", "train", tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "train" / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"masks/b\.png.*8x8.*images/b\.png.*16x16"):
        load("instance_folder", "train", tmp_path)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "train" / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*shape \(16, 16, 3\).*not colours"):
        load("instance_folder", "train", tmp_path, validate=True)
    Image.fromarray(a.astype(np.uint8)).save(tmp_path / "train" / "masks" / "b.png")
    os.makedirs(tmp_path / "train" / "classes")
    (tmp_path / "train" / "classes" / "a.json").write_text(json.dumps({"2": "cell"}))
    (tmp_path / "train" / "classes" / "b.json").write_text(json.dumps({"2": "cell", "5": "x"}))
    with pytest.raises(ValueError, match=r"masks/a\.png.*instance id 5.*classes/a\.json"):
        load("instance_folder", "train", tmp_path, validate=True)
    (tmp_path / "train" / "classes" / "a.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"classes/a\.json.*holds a list"):
        get_info("instance_folder", tmp_path)
    (tmp_path / "train" / "classes" / "a.json").write_text(json.dumps({"2": "cell", "5": "dog"}))
    (tmp_path / "classes.txt").write_text("cell\nx\n")
    with pytest.raises(ValueError, match=r"a\.json.*class 'dog'.*classes\.txt"):
        get_info("instance_folder", tmp_path)
    os.remove(tmp_path / "classes.txt")
    with pytest.raises(ValueError, match=r"split 'val' not found"):
        load("instance_folder", "val", tmp_path)
