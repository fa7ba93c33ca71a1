"""The one image reader (segzoo.data.readers): TIFF, 16-bit, gray, the input rule, errors."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from segzoo.data import readers


def _reference_rule(values):
    """The documented input rule, written out in float64."""
    values = values.astype(np.float64)
    lo, hi = np.percentile(values, [1.0, 99.8])
    return np.rint(255 * np.clip((values - lo) / (hi - lo), 0, 1)).astype(np.uint8)


def _microscope(seed=0):
    """A 12-bit image: dim background, a few bright cells."""
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 30, (40, 48))
    image[5:15, 8:20] += 2000
    image[25:35, 30:44] += 1200
    return np.clip(image, 0, 4095).astype(np.uint16)


def test_sixteen_bit_tiff_follows_the_rule_and_matches_its_8_bit_export(tmp_path):
    raw = _microscope()
    tifffile.imwrite(tmp_path / "cells.tif", raw)
    image = readers.read_image(tmp_path / "cells.tif")
    assert image.shape == (40, 48, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], _reference_rule(raw))
    assert (image[..., 0] == image[..., 2]).all()
    # the 8-bit exports microscopy tools write: a min-max stretch and a plain >> 4
    for export in (np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 255), raw >> 4):
        Image.fromarray(export.astype(np.uint8)).save(tmp_path / "export.png")
        exported = readers.read_image(tmp_path / "export.png")
        difference = np.abs(exported.astype(int) - image.astype(int))
        assert difference.max() <= 16 and difference.mean() < 1.5
    Image.fromarray(raw).save(tmp_path / "cells16.png")  # a 16-bit PNG
    np.testing.assert_array_equal(readers.read_image(tmp_path / "cells16.png"), image)


def test_eight_bit_colour_is_used_as_is(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(np.dstack([rgb, np.full((6, 7), 9, np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(readers.read_image(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(readers.read_image(tmp_path / "rgba.png"), rgb)
    tifffile.imwrite(tmp_path / "a.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(readers.read_image(tmp_path / "a.tif"), rgb)
    luma = readers.read_image(tmp_path / "a.png", channels=1)
    reference = np.asarray(Image.fromarray(rgb).convert("L"))
    assert luma.shape == (6, 7, 1) and np.abs(luma[..., 0].astype(int) - reference).max() <= 1


def test_tiff_layouts(tmp_path):
    raw = _microscope()
    rgb16 = np.stack([raw, raw // 2, raw // 3], -1)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "contig.tif", rgb16, photometric="rgb")
    planar = readers.read_image(tmp_path / "planar.tif")
    np.testing.assert_array_equal(planar, readers.read_image(tmp_path / "contig.tif"))
    assert readers.image_header(tmp_path / "planar.tif") == readers.ImageHeader(40, 48, 3)
    tifffile.imwrite(tmp_path / "float.tif", raw.astype(np.float32) / 4095)
    float_image = readers.read_image(tmp_path / "float.tif")
    np.testing.assert_array_equal(float_image[..., 0], _reference_rule(raw.astype(np.float32)))
    Image.fromarray(raw).save(tmp_path / "lzw.tif", compression="tiff_lzw")  # needs Pillow
    np.testing.assert_array_equal(readers.read_image(tmp_path / "lzw.tif")[..., 0],
                                  _reference_rule(raw))
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([raw] * 5))
    with pytest.raises(ValueError, match=r"stack\.tif.*shape \(5, 40, 48\).*one 2-D image"):
        readers.read_image(tmp_path / "stack.tif")
    assert readers.read_image(tmp_path / "lzw.tif", channels=None).shape == (40, 48, 1)


def test_constant_and_sparse_images():
    assert (readers.to_uint8(np.full((4, 4), 7, np.uint16)) == 0).all()
    sparse = np.zeros((50, 50), np.uint16)
    sparse[0, 0] = 1000  # fewer bright pixels than the 99.8th percentile sees
    out = readers.to_uint8(sparse)
    assert out[0, 0] == 255 and out.sum() == 255


def test_bad_files_give_one_line_naming_the_file(tmp_path, monkeypatch):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    for name in ("broken.png", "broken.tif"):
        with pytest.raises(ValueError, match=name):
            readers.read_image(tmp_path / name)
    with pytest.raises(ValueError, match=r"missing\.png.*does not exist"):
        readers.read_image(tmp_path / "missing.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for name in ("big.png", "big.tif"):
        with pytest.raises(ValueError, match=rf"{name}.*2000 pixels") as error:
            readers.read_image(tmp_path / name)
        assert "\n" not in str(error.value)


def test_image_bytes(tmp_path):
    raw = _microscope()
    tifffile.imwrite(tmp_path / "a.tif", raw)
    data = (tmp_path / "a.tif").read_bytes()
    np.testing.assert_array_equal(readers.read_image(data, name="x"),
                                  readers.read_image(tmp_path / "a.tif"))
    with pytest.raises(ValueError, match=r"labelme\.json \(imageData\)"):
        readers.read_image(b"nothing", name="labelme.json (imageData)")
