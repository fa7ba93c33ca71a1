import os
import shutil
import tarfile

import numpy as np
import pytest

from segzoo.data import get_info, load
from segzoo.data.voc import voc_palette
from tests.data import fakes


def _elements(ds):
    return {e["image_id"].numpy().decode(): {k: v.numpy() for k, v in e.items()} for e in ds}


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    truth = fakes.make_voc(root)
    return root, truth


def test_palette_known_colours():
    palette = voc_palette()
    assert palette[0].tolist() == [0, 0, 0] and palette[1].tolist() == [128, 0, 0]
    assert palette[15].tolist() == [192, 128, 128] and palette[255].tolist() == [224, 224, 192]


def test_voc_splits_labels_and_grayscale(voc_dir):
    root, truth = voc_dir
    info = get_info("voc", root)
    assert info.num_classes == 21 and info.class_names[0] == "background"
    assert info.class_names[15] == "person" and info.splits[-1] == "train_aug"
    for split, names in fakes.VOC_SPLITS.items():
        elements = _elements(load("voc", split, root, download=False))
        assert sorted(elements) == sorted(names)  # exactly the split's names
        for name, e in elements.items():
            image, classes_map = truth[name][:2]
            assert e["image"].dtype == np.uint8 and e["image"].shape == image.shape
            np.testing.assert_array_equal(e["image"], image)  # JPEG bytes stored as is
            np.testing.assert_array_equal(e["mask"], classes_map)  # indices, 255 kept
            assert 255 in e["mask"]
    gray = truth[fakes.GRAYSCALE][0]
    assert gray.shape[-1] == 3 and (gray[..., 0] == gray[..., 2]).all()


def test_second_load_reuses_prepared_files(voc_dir):
    root, _ = voc_dir
    list(load("voc", "train", root, download=False))
    prepared = os.path.join(root, "segzoo_tfds")
    stamp = {
        p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, fs in os.walk(prepared) for p in fs
    }
    list(load("voc", "val", root, download=False))
    again = {
        p: os.stat(os.path.join(d, p)).st_mtime_ns for d, _, fs in os.walk(prepared) for p in fs
    }
    assert stamp == again


def test_voc_from_tar(tmp_path):
    src = tmp_path / "src"
    truth = fakes.make_voc(src)
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(src / "VOCdevkit", arcname="VOCdevkit")
    elements = _elements(load("voc", "val", data, download=False))
    assert sorted(elements) == fakes.VOC_SPLITS["val"]
    name = fakes.VOC_SPLITS["val"][0]
    np.testing.assert_array_equal(elements[name]["mask"], truth[name][1])


def test_train_aug_with_sbd(tmp_path):
    truth = fakes.make_voc(tmp_path)
    sbd_train, sbd_val = ["2008_000001", "2007_000004"], ["2008_000002", "2007_000001"]
    sbd_truth = fakes.make_sbd(tmp_path, sbd_train, sbd_val)
    elements = _elements(load("voc", "train_aug", tmp_path, download=False))
    # (SBD train + SBD val + VOC train) - VOC val
    expected = {"2008_000001", "2008_000002", "2007_000001", "2007_000002", "2007_000003"}
    assert set(elements) == expected
    np.testing.assert_array_equal(elements["2008_000001"]["mask"], sbd_truth["2008_000001"])
    np.testing.assert_array_equal(elements["2007_000001"]["mask"], truth["2007_000001"][1])


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(ValueError, match=r"VOCdevkit.*VOC2012.*VOCtrainval_11-May-2012\.tar"):
        load("voc", "train", tmp_path, download=False)
    fakes.make_voc(tmp_path)
    with pytest.raises(ValueError, match=r"benchmark_RELEASE.*benchmark\.tgz"):
        load("voc", "train_aug", tmp_path, download=False)
    with pytest.raises(ValueError, match="no split 'test'"):
        load("voc", "test", tmp_path)


def _broken(tmp_path, mutate):
    fakes.make_voc(tmp_path)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    mutate(base)
    with pytest.raises(ValueError) as info:
        list(load("voc", "train", tmp_path, download=False))
    return str(info.value)


def test_corrupt_image(tmp_path):
    def mutate(base):
        (base / "JPEGImages" / "2007_000003.jpg").write_bytes(b"not a jpeg")

    assert "2007_000003.jpg" in _broken(tmp_path, mutate)


def test_missing_mask(tmp_path):
    def mutate(base):
        os.remove(base / "SegmentationClass" / "2007_000001.png")

    assert "2007_000001.png" in _broken(tmp_path, mutate)


def test_wrong_size_mask(tmp_path):
    def mutate(base):
        fakes.save_palette_png(base / "SegmentationClass" / "2007_000002.png", np.zeros((5, 5)))

    message = _broken(tmp_path, mutate)
    assert "2007_000002.png" in message and "same size" in message


def test_label_out_of_range(tmp_path):
    def mutate(base):
        path = base / "SegmentationClass" / "2007_000001.png"
        labels = np.zeros((24, 32), np.uint8)
        labels[0, 0] = 21
        fakes.save_palette_png(path, labels)

    message = _broken(tmp_path, mutate)
    assert "2007_000001.png" in message and "[21]" in message and "[0, 21)" in message


def test_empty_split(tmp_path):
    def mutate(base):
        (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n")

    assert "train.txt" in _broken(tmp_path, mutate)
    shutil.rmtree(tmp_path / "segzoo_tfds", ignore_errors=True)


def test_train_aug_from_sbd_archive_and_bad_mat(tmp_path):
    fakes.make_voc(tmp_path)
    src = tmp_path / "sbd_src"
    fakes.make_sbd(src, ["2008_000001"], ["2008_000002"])
    with tarfile.open(tmp_path / "benchmark.tgz", "w:gz") as tar:
        tar.add(src / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    shutil.rmtree(src)
    elements = _elements(load("voc", "train_aug", tmp_path, download=False))
    assert set(elements) == {"2008_000001", "2008_000002", *fakes.VOC_SPLITS["train"]}

    from segzoo.data.sbd import read_sbd_mask

    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"MATLAB junk")
    with pytest.raises(ValueError, match=r"GTcls\.Segmentation.*bad\.mat"):
        read_sbd_mask(bad)
