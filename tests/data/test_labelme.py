"""`labelme`: folders of labelme JSON files (generated), semantic and instance views."""

import base64
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from segzoo.data import dataset_tasks, get_info, load
from segzoo.data.labelme import shape_to_mask


def _png_bytes(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _shape(label, points, kind="polygon", group_id=None):
    return {"label": label, "points": points, "group_id": group_id, "shape_type": kind,
            "flags": {}}


def _labelme_file(path, shapes, image, *, embed=False, image_path=None):
    data = {"version": "5.5.0", "flags": {}, "shapes": shapes,
            "imagePath": image_path or os.path.basename(path)[:-5] + ".png",
            "imageData": base64.b64encode(_png_bytes(image)).decode() if embed else None,
            "imageHeight": image.shape[0], "imageWidth": image.shape[1]}
    if not embed:
        Image.fromarray(image).save(os.path.join(os.path.dirname(path), data["imagePath"]))
    with open(path, "w") as f:
        json.dump(data, f)


def _tree(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        os.makedirs(root / split)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    _labelme_file(root / "train" / "a.json", [
        _shape("dog", [[2, 2], [10, 2], [10, 8], [2, 8]]),
        _shape("cat", [[12, 4], [20, 14]], "rectangle"),
        _shape("cat", [[25, 18], [28, 18]], "circle"),
        _shape("dog", [[22, 2], [26, 2], [26, 6]], group_id=1),
        _shape("dog", [[28, 2], [30, 2], [30, 6]], group_id=1),
        _shape("__ignore__", [[0, 20], [4, 23]], "rectangle"),
        _shape("dog", [[1, 1], [5, 5]], "line"),
    ], image, embed=True)
    _labelme_file(root / "train" / "b.json", [], image[:16])
    _labelme_file(root / "val" / "c.json", [_shape("cat", [[0, 0], [4, 4]], "rectangle")], image)
    return image


def test_semantic_view_with_embedded_image(tmp_path):
    image = _tree(tmp_path)
    assert dataset_tasks("labelme") == ("semantic", "instance")
    info = get_info("labelme", tmp_path)
    assert info.task == "semantic" and info.class_names == ("background", "cat", "dog")
    assert info.splits == ("train", "val")
    elements = {e["image_id"].decode(): e for e in load("labelme", "train", tmp_path)
                .as_numpy_iterator()}
    a = elements["a"]
    np.testing.assert_array_equal(a["image"], image)
    mask = a["mask"]
    assert (mask[2:9, 2:11] == 2).all()  # polygon with its outline: x 2..10, y 2..8
    assert mask[1, 2] == 0 and mask[9, 2] == 0
    assert (mask[4:15, 12:21] == 1).all() and mask[4, 21] == 0  # rectangle incl. both corners
    assert mask[18, 25] == 1 and mask[18, 29] == 0  # circle of radius 3 around (25, 18)
    assert (mask[20:24, 0:5] == 255).all()  # __ignore__
    assert elements["b"]["mask"].shape == (16, 32) and (elements["b"]["mask"] == 0).all()


def test_instance_view_groups_shapes(tmp_path):
    _tree(tmp_path)
    info = get_info("labelme", tmp_path, task="instance")
    assert info.task == "instance" and info.class_names == ("cat", "dog")
    a = next(load("labelme", "train", tmp_path, task="instance").as_numpy_iterator())
    np.testing.assert_array_equal(a["classes"], [2, 1, 1, 2])  # dog, cat, cat, dog (group 1)
    np.testing.assert_array_equal(a["boxes"][0], [2, 2, 11, 9])
    np.testing.assert_array_equal(a["boxes"][1], [12, 4, 21, 15])
    group = a["masks"][3]
    assert group[3, 23] and group[3, 29] and not group[3, 27]  # two triangles, one instance
    assert a["boxes"][3][0] == 22 and a["boxes"][3][2] == 31


def test_labelme_reference_rectangle_and_circle():
    """Exactly labelme's `shape_to_mask` for axis-aligned shapes (PIL, outline included)."""
    rect = shape_to_mask(10, 12, "rectangle", np.array([[7.0, 6.0], [2.0, 1.0]]))
    expected = np.zeros((10, 12), bool)
    expected[1:7, 2:8] = True
    np.testing.assert_array_equal(rect, expected)
    circle = shape_to_mask(21, 21, "circle", np.array([[10.0, 10.0], [10.0, 14.0]]))
    yy, xx = np.mgrid[:21, :21]
    distance = (yy - 10) ** 2 + (xx - 10) ** 2
    assert circle[distance <= 16].all() and not circle[distance > 25].any()


def test_flat_folder_and_classes_txt(tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    for i in range(12):
        _labelme_file(tmp_path / f"img{i:02d}.json",
                      [_shape("b", [[0, 0], [3, 3]], "rectangle")], image)
    (tmp_path / "classes.txt").write_text("__ignore__\n_background_\nz\nb\n")
    info = get_info("labelme", tmp_path)
    assert info.splits == ("train", "val") and info.class_names == ("background", "z", "b")
    assert len(list(load("labelme", "val", tmp_path))) == 1  # img09
    assert len(list(load("labelme", "train", tmp_path))) == 11


def test_bad_files_name_the_file(tmp_path):
    image = _tree(tmp_path)
    (tmp_path / "classes.txt").write_text("cat\n")
    with pytest.raises(ValueError, match=r"a\.json.*label 'dog'.*classes\.txt"):
        get_info("labelme", tmp_path)
    os.remove(tmp_path / "classes.txt")
    _labelme_file(tmp_path / "val" / "c.json", [_shape("cat", [[0, 0], [4, 4]])], image)
    with pytest.raises(ValueError, match=r"c\.json.*shape 0.*2 points.*at least 3"):
        get_info("labelme", tmp_path)
    _labelme_file(tmp_path / "val" / "c.json", [_shape("cat", [[0, 0], [4, 4]], "blob")], image)
    with pytest.raises(ValueError, match=r"c\.json.*shape_type 'blob'"):
        get_info("labelme", tmp_path)
    _labelme_file(tmp_path / "val" / "c.json", [], image, image_path="missing.png")
    os.remove(tmp_path / "val" / "missing.png")
    with pytest.raises(ValueError, match=r"c\.json.*imagePath 'missing\.png' is not found"):
        get_info("labelme", tmp_path)
    (tmp_path / "val" / "c.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read .*c\.json"):
        get_info("labelme", tmp_path)
    data = {"shapes": [], "imagePath": "x.png", "imageData": base64.b64encode(b"no image").decode(),
            "imageHeight": 4, "imageWidth": 4}
    (tmp_path / "val" / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"c\.json \(imageData\)"):
        load("labelme", "val", tmp_path, validate=True)
