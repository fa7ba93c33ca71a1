import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from segzoo.data import get_info, load


def _write(root, split, name, image, mask, ext=".png"):
    (root / split / "images").mkdir(parents=True, exist_ok=True)
    (root / split / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / split / "images" / f"{name}{ext}")
    Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{name}.png")


def _make(root, rng):
    images, masks = {}, {}
    for split, names in (("train", ["b", "a"]), ("val", ["c"])):
        for name in names:
            image = rng.integers(0, 256, size=(12, 17, 3), dtype=np.uint8)
            mask = rng.integers(0, 3, size=(12, 17)).astype(np.uint8)
            mask[0] = 255
            _write(root, split, name, image, mask)
            images[name], masks[name] = image, mask
    masks["c"][3, 3] = 4  # largest label anywhere: 4 -> 5 classes
    Image.fromarray(masks["c"], mode="L").save(root / "val" / "masks" / "c.png")
    return images, masks


def test_folder_reads_pairs_in_name_order(tmp_path):
    images, masks = _make(tmp_path, np.random.default_rng(0))
    info = get_info("folder", tmp_path)
    assert info.num_classes == 5 and info.splits == ("train", "val")
    assert info.class_names[0] == "class_0"
    elements = list(load("folder", "train", tmp_path))
    assert [e["image_id"].numpy() for e in elements] == [b"a", b"b"]
    for e in elements:
        name = e["image_id"].numpy().decode()
        np.testing.assert_array_equal(e["image"].numpy(), images[name])
        np.testing.assert_array_equal(e["mask"].numpy(), masks[name])
        assert e["mask"].dtype == tf.uint8 and e["image"].dtype == tf.uint8


def test_classes_txt_and_grayscale_jpeg(tmp_path):
    (tmp_path / "classes.txt").write_text("bg\ncat\ndog\n")
    gray = (np.arange(20 * 10) % 256).astype(np.uint8).reshape(10, 20)
    mask = np.zeros((10, 20), np.uint8)
    mask[5:, :] = 2
    _write(tmp_path, "train", "g", gray, mask, ext=".jpg")
    info = get_info("folder", tmp_path)
    assert info.class_names == ("bg", "cat", "dog") and info.num_classes == 3
    (e,) = list(load("folder", "train", tmp_path))
    image = e["image"].numpy()
    assert image.shape == (10, 20, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    np.testing.assert_array_equal(e["mask"].numpy(), mask)


def test_errors_at_load(tmp_path):
    with pytest.raises(ValueError, match="needs data_dir"):
        load("folder", "train")
    _make(tmp_path, np.random.default_rng(1))
    with pytest.raises(ValueError, match="split 'test' not found"):
        load("folder", "test", tmp_path)
    (tmp_path / "val" / "masks" / "c.png").rename(tmp_path / "val" / "masks" / "zz.png")
    with pytest.raises(ValueError, match=r"have no mask.*c\.png"):
        load("folder", "val", tmp_path, num_classes=5)
    (tmp_path / "val" / "masks" / "zz.png").unlink()
    with pytest.raises(ValueError, match="have no mask"):
        load("folder", "val", tmp_path, num_classes=5)
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(tmp_path / "val/masks/c.png")
    with pytest.raises(ValueError, match=r"c\.png.*5x5.*17x12"):
        load("folder", "val", tmp_path, num_classes=5)
    Image.fromarray(np.zeros((5, 5), np.uint8), mode="L").save(tmp_path / "train/masks/extra.png")
    with pytest.raises(ValueError, match=r"have no image.*extra\.png"):
        load("folder", "train", tmp_path, num_classes=5)
    empty = tmp_path / "empty"
    (empty / "train" / "images").mkdir(parents=True)
    (empty / "train" / "masks").mkdir(parents=True)
    with pytest.raises(ValueError, match="is empty"):
        load("folder", "train", empty, num_classes=2)


def test_label_out_of_range_and_corrupt_image(tmp_path):
    _make(tmp_path, np.random.default_rng(2))
    # Labels up to 4 but only 3 classes declared.
    with pytest.raises(ValueError, match=r"c\.png.*\[4\].*\[0, 3\)"):
        load("folder", "val", tmp_path, num_classes=3, validate=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"c\.png.*\[0, 3\)"):
        list(load("folder", "val", tmp_path, num_classes=3))
    path = tmp_path / "train" / "images" / "a.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"a\.png"):
        load("folder", "train", tmp_path, num_classes=5, validate=True)


def test_rgb_mask_rejected(tmp_path):
    _make(tmp_path, np.random.default_rng(3))
    Image.fromarray(np.zeros((12, 17, 3), np.uint8)).save(tmp_path / "val" / "masks" / "c.png")
    with pytest.raises(ValueError, match=r"c\.png.*mode 'RGB'"):
        load("folder", "val", tmp_path, num_classes=5, validate=True)


def test_two_images_with_one_name_are_refused(tmp_path):
    """`a.png` and `a.jpg` would both pair with `masks/a.png`: an error naming both files."""
    images, masks = _make(tmp_path, np.random.default_rng(0))
    Image.fromarray(images["a"]).save(tmp_path / "train" / "images" / "a.jpg")
    with pytest.raises(ValueError, match=r"folder: two images named 'a' .*a\.jpg, a\.png"):
        load("folder", "train", tmp_path)
