import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from segzoo.data import get_info, load
from segzoo.data.keypoints import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON
from tests.data.keypoint_fakes import make_coco_keypoints


def test_coco_keypoints_elements_against_pycocotools(tmp_path):
    make_coco_keypoints(tmp_path)
    info = get_info("coco", tmp_path, keypoints=True)
    assert info.splits == ("val2017",) and info.class_names == ("person",)
    assert info.keypoint_names == COCO_PERSON_KEYPOINTS
    assert info.skeleton == COCO_PERSON_SKELETON and info.skeleton[0] == (15, 13)

    path = tmp_path / "annotations" / "person_keypoints_val2017.json"
    coco = COCO(str(path))
    elements = list(load("coco", "val2017", tmp_path, keypoints=True).as_numpy_iterator())
    assert [int(e["image_id"]) for e in elements] == [10, 20, 30]
    for element in elements:
        image_id = int(element["image_id"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        expected = np.asarray([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        assert element["keypoints"].dtype == np.float32
        np.testing.assert_array_equal(element["keypoints"], expected)
        assert element["keypoints"].shape == (len(element["classes"]), 17, 3)
        for mask, ann in zip(element["masks"], anns, strict=True):
            np.testing.assert_array_equal(mask, coco.annToMask(ann))
    negative = elements[1]
    assert negative["keypoints"].shape == (0, 17, 3) and negative["masks"].shape == (0, 40, 40)
    # The person without keypoints stays an instance (box and mask train), all v = 0.
    assert not elements[0]["keypoints"][1].any()
    # The spec carries K statically.
    spec = load("coco", "val2017", tmp_path, keypoints=True).element_spec
    assert spec["keypoints"].shape.as_list() == [None, 17, 3]


def test_coco_without_keypoints_reads_instances_file(tmp_path):
    make_coco_keypoints(tmp_path)
    info = get_info("coco", tmp_path)
    assert info.keypoint_names is None and info.skeleton == ()
    element = next(load("coco", "val2017", tmp_path).as_numpy_iterator())
    assert "keypoints" not in element


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["annotations"][0].update(keypoints=[1, 2, 2] * 16), "48 keypoint values"),
        (lambda d: d["annotations"][0].update(keypoints=[1, 2, 3] * 17), "visibilities"),
        (lambda d: d["categories"][0].pop("keypoints"), "no category .* 'keypoints' list"),
        (lambda d: d["categories"][0].update(skeleton=[[1, 18]]), "skeleton pair"),
    ],
)
def test_coco_keypoints_bad_files_name_the_file(tmp_path, change, message):
    make_coco_keypoints(tmp_path)
    path = tmp_path / "annotations" / "person_keypoints_val2017.json"
    _rewrite(path, change)
    with pytest.raises(ValueError, match=message) as error:
        list(load("coco", "val2017", tmp_path, keypoints=True).as_numpy_iterator())
    assert "person_keypoints_val2017.json" in str(error.value)


def test_coco_keypoints_missing_file_is_a_clear_error(tmp_path):
    make_coco_keypoints(tmp_path)
    (tmp_path / "annotations" / "person_keypoints_val2017.json").unlink()
    with pytest.raises(ValueError, match=r"person_keypoints_\{split\}\.json"):
        get_info("coco", tmp_path, keypoints=True)


def test_shapes_written_as_coco_read_back_equal(tmp_path):
    from tests.data.keypoint_fakes import write_shapes_coco

    write_shapes_coco(tmp_path, splits=(("val", 6),), image_size=48)
    info = get_info("coco", tmp_path, keypoints=True)
    assert info.keypoint_names == ("top", "left", "right", "bottom")
    assert info.skeleton == ((0, 1), (1, 3), (3, 2), (2, 0))
    back = list(load("coco", "val", tmp_path, keypoints=True).as_numpy_iterator())
    original = list(load("shapes", "val", task="instance", keypoints=True, num_images=6,
                         image_size=48).as_numpy_iterator())
    for a, b in zip(back, original, strict=True):
        for key in ("image", "boxes", "classes", "masks", "keypoints"):
            np.testing.assert_array_equal(a[key], b[key])
