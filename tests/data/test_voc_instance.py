import numpy as np
import pytest

from segzoo.data import get_info, load
from segzoo.data.voc_instance import numeric_image_id, objects_and_classes
from tests.data import fakes


def test_voc_instance_boxes_masks_classes(tmp_path):
    truth = fakes.make_voc(tmp_path)
    info = get_info("voc_instance", tmp_path)
    assert info.task == "instance" and info.num_classes == 20
    assert info.class_names[0] == "aeroplane" and info.category_ids == tuple(range(1, 21))
    elements = list(load("voc_instance", "trainval", tmp_path, download=False))
    assert sorted(int(e["image_id"]) for e in elements) == sorted(
        numeric_image_id(n) for n in fakes.VOC_SPLITS["trainval"]
    )
    for e in elements:
        name = next(n for n in fakes.VOC_NAMES if numeric_image_id(n) == int(e["image_id"]))
        image, _, object_map, classes = truth[name]
        np.testing.assert_array_equal(e["image"].numpy(), image)
        np.testing.assert_array_equal(e["classes"].numpy(), classes)
        masks = e["masks"].numpy()
        assert masks.dtype == np.uint8 and masks.shape == (len(classes),) + object_map.shape
        for k in range(len(classes)):
            np.testing.assert_array_equal(masks[k], object_map == k + 1)  # 255 excluded
            ys, xs = np.nonzero(object_map == k + 1)
            expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            np.testing.assert_array_equal(e["boxes"].numpy()[k], expected)
        assert not e["is_crowd"].numpy().any()


def test_objects_and_classes_renumbers_and_checks():
    objects = np.array([[0, 3, 3], [255, 7, 7]], np.uint8)
    classes = np.array([[0, 5, 5], [255, 9, 9]], np.uint8)
    renumbered, cls = objects_and_classes(objects, classes, "x.png")
    np.testing.assert_array_equal(renumbered, [[0, 1, 1], [255, 2, 2]])
    np.testing.assert_array_equal(cls, [5, 9])
    classes[1, 2] = 4
    with pytest.raises(ValueError, match=r"Instance 7 of 'x.png'.*\[4, 9\]"):
        objects_and_classes(objects, classes, "x.png")


def test_numeric_image_id():
    assert numeric_image_id("2007_000032") == 2007000032
    assert numeric_image_id("abc") == numeric_image_id("abc") > 0


def test_image_without_objects_is_kept(tmp_path):
    truth = fakes.make_voc(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    h, w = truth["2007_000004"][1].shape
    for sub in ("SegmentationClass", "SegmentationObject"):
        fakes.save_palette_png(base / sub / "2007_000004.png", np.zeros((h, w)))
    elements = {
        int(e["image_id"]): e for e in load("voc_instance", "val", tmp_path, download=False)
    }
    empty = elements[2007000004]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, h, w)
    assert empty["classes"].shape == (0,) and len(elements) == 2
