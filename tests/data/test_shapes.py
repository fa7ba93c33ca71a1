import numpy as np
import pytest

from segzoo.data import get_info, load
from segzoo.data.shapes import KEYPOINT_NAMES, extreme_points, instance_targets


def _take(ds, n):
    return [{k: v.numpy() for k, v in e.items()} for e in ds.take(n)]


def test_semantic_elements_and_determinism():
    a = _take(load("shapes", "train", num_images=6, image_size=48), 6)
    b = _take(load("shapes", "train", num_images=6, image_size=48), 6)
    c = _take(load("shapes", "train", num_images=6, image_size=48, seed=1), 6)
    v = _take(load("shapes", "val", num_images=6, image_size=48), 6)
    assert len(a) == 6
    for ea, eb in zip(a, b, strict=True):
        assert ea["image"].dtype == np.uint8 and ea["image"].shape == (48, 48, 3)
        assert ea["mask"].dtype == np.uint8 and ea["mask"].shape == (48, 48)
        assert set(np.unique(ea["mask"])) <= {0, 1, 2, 3}
        np.testing.assert_array_equal(ea["image"], eb["image"])
        np.testing.assert_array_equal(ea["mask"], eb["mask"])
    assert a[0]["image_id"] == b"shapes_train_00000"
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))
    assert not all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, v, strict=True))


def test_default_sizes_and_info():
    assert load("shapes", "train").cardinality().numpy() == 512
    assert load("shapes", "val").cardinality().numpy() == 64
    info = get_info("shapes")
    assert info.task == "semantic" and info.num_classes == 4
    assert info.class_names == ("background", "circle", "rectangle", "triangle")
    inst = get_info("shapes", task="instance")
    assert inst.num_classes == 3 and inst.category_ids == (1, 2, 3)
    assert inst.class_names == ("circle", "rectangle", "triangle")


def test_instance_view_matches_semantic_view():
    sem = _take(load("shapes", "train", num_images=40, image_size=64), 40)
    ins = _take(load("shapes", "train", num_images=40, image_size=64, task="instance"), 40)
    negatives = 0
    for s, e in zip(sem, ins, strict=True):
        np.testing.assert_array_equal(s["image"], e["image"])
        n = len(e["classes"])
        negatives += n == 0
        assert e["masks"].shape == (n, 64, 64) and e["boxes"].shape == (n, 4)
        assert e["is_crowd"].dtype == bool and not e["is_crowd"].any()
        # Instance masks are disjoint visible parts that rebuild the semantic mask.
        assert (e["masks"].sum(0) <= 1).all()
        rebuilt = (e["masks"] * e["classes"][:, None, None]).sum(0)
        np.testing.assert_array_equal(rebuilt, s["mask"])
        for box, mask in zip(e["boxes"], e["masks"], strict=True):
            ys, xs = np.nonzero(mask)
            np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert negatives >= 1  # about 10% negatives


def test_image_size_range():
    for e in _take(load("shapes", "train", num_images=8, image_size=(40, 70)), 8):
        h, w = e["mask"].shape
        assert 40 <= h <= 70 and 40 <= w <= 70 and e["image"].shape == (h, w, 3)


def test_instance_targets_boxes():
    instance_map = np.zeros((6, 8), np.int32)
    instance_map[1:3, 2:5] = 1
    instance_map[4, 7] = 2
    boxes, masks = instance_targets(instance_map, np.array([3, 1], np.int32))
    np.testing.assert_array_equal(boxes, [[2, 1, 5, 3], [7, 4, 8, 5]])
    assert masks.dtype == np.uint8 and masks.sum() == 7


@pytest.mark.parametrize(
    "kwargs", [{"num_images": 0}, {"image_size": 4}, {"task": "panoptic"}, {"image_size": (90, 50)}]
)
def test_bad_options(kwargs):
    with pytest.raises(ValueError):
        load("shapes", "train", **kwargs)


def test_unknown_split_and_dataset():
    with pytest.raises(ValueError, match="no split 'training'"):
        load("shapes", "training")
    with pytest.raises(ValueError, match="Did you mean 'shapes'"):
        load("shape", "train")


def test_cache_gives_identical_epochs():
    for cache in (True, False):
        ds = load("shapes", "val", num_images=4, image_size=32, task="instance", cache=cache)
        first, second = _take(ds, 4), _take(ds, 4)
        for a, b in zip(first, second, strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_extreme_points_of_hand_drawn_masks():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True  # a rectangle: rows 2..4, columns 3..8
    mask[5, 7] = True  # one pixel below: the bottom extreme
    np.testing.assert_array_equal(
        extreme_points(mask),
        [[6.0, 2.5], [3.5, 3.5], [9.0 - 0.5, 3.5], [7.5, 5.5]],  # (x, y) pixel centres
    )


def test_keypoints_are_the_extreme_points_and_change_nothing_else():
    kwargs = {"num_images": 24, "image_size": 64, "task": "instance"}
    plain = _take(load("shapes", "val", **kwargs), 24)
    with_points = _take(load("shapes", "val", keypoints=True, **kwargs), 24)
    info = get_info("shapes", task="instance", keypoints=True)
    assert info.keypoint_names == KEYPOINT_NAMES == ("top", "left", "right", "bottom")
    assert info.skeleton == ((0, 1), (1, 3), (3, 2), (2, 0))
    visible = hidden = 0
    for a, b in zip(plain, with_points, strict=True):
        for key in ("image", "boxes", "classes", "masks"):
            np.testing.assert_array_equal(a[key], b[key])
        points = b["keypoints"]
        assert points.dtype == np.float32 and points.shape == (len(b["classes"]), 4, 3)
        assert set(np.unique(points[..., 2])) <= {1.0, 2.0}
        instance_map = np.zeros(b["image"].shape[:2], np.int64)
        for i, mask in enumerate(b["masks"]):
            instance_map[mask.astype(bool)] = i + 1
        for i, (box, kp) in enumerate(zip(b["boxes"], points, strict=True)):
            x, y, v = kp[:, 0], kp[:, 1], kp[:, 2]
            owner = instance_map[y.astype(int), x.astype(int)]
            # Visible points lie on the instance's own pixels and, being extremes of the
            # whole shape, on its visible box's edges (pixel centres); hidden ones are covered.
            np.testing.assert_array_equal(owner[v == 2], i + 1)
            assert np.all(owner[v == 1] != i + 1)
            edges = np.asarray([y[0] - 0.5 - box[1], x[1] - 0.5 - box[0],
                                box[2] - (x[2] + 0.5), box[3] - (y[3] + 0.5)])  # fmt: skip
            np.testing.assert_allclose(edges[v == 2], 0.0, atol=1e-5)
            assert np.all(edges[v == 1] <= 1e-5)  # the hidden extreme is outside the visible box
            visible += int((v == 2).sum())
            hidden += int((v == 1).sum())
    assert visible > 100 and hidden > 0


def test_keypoints_need_the_instance_view():
    with pytest.raises(ValueError, match="task='instance'"):
        load("shapes", "val", keypoints=True)
