"""Folder runs: input expansion, equal-size batches, failures, progress, atomic writes."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from segzoo.inference.inputs import (
    Failures,
    Progress,
    atomic_save,
    equal_size_batches,
    expand_inputs,
    output_stem,
    outputs_exist,
)


def _write(path, h=8, w=8, value=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return str(path)


def test_directories_globs_and_files_expand_sorted_once(tmp_path):
    a = _write(tmp_path / "d" / "b.png")
    b = _write(tmp_path / "d" / "a.jpg")
    (tmp_path / "d" / "notes.txt").write_text("not an image")
    c = _write(tmp_path / "e" / "sub" / "c.png")
    one = str(tmp_path / "one.weird")  # an explicit file is taken whatever its name
    os.rename(_write(tmp_path / "f" / "one.png"), one)
    got = expand_inputs([str(tmp_path / "d"), str(tmp_path / "e" / "**" / "*.png"), one, a])
    assert got == [os.path.normpath(p) for p in (b, a, c, one)]


def test_bad_inputs_raise_naming_the_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        expand_inputs([str(tmp_path / "missing.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(ValueError, match=r"\*\.tif"):
        expand_inputs([str(tmp_path / "*.tif")])
    _write(tmp_path / "x" / "im.png")
    _write(tmp_path / "y" / "im.jpg")
    with pytest.raises(ValueError, match="im.png"):
        expand_inputs([str(tmp_path / "x"), str(tmp_path / "y")])


def test_equal_size_batches_group_sizes_and_collect_failures(tmp_path):
    sizes = [(8, 8), (8, 8), (4, 6), (8, 8), (4, 6), (8, 8), (8, 8)]
    paths = [_write(tmp_path / f"{i}.png", h, w, i) for i, (h, w) in enumerate(sizes)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    paths.insert(3, str(bad))
    failures = Failures()

    def read(path):
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))

    batches = list(equal_size_batches(paths, read, batch_size=3, failures=failures, prefetch=2))
    seen = [p for b in batches for p in b.paths]
    assert sorted(seen) == sorted(p for p in paths if p != str(bad))  # each good image once
    for batch in batches:
        assert len(batch.paths) <= 3 and batch.images.dtype == np.uint8
        assert len({im.shape for im in batch.images}) == 1
        for path, image in zip(batch.paths, batch.images, strict=True):
            assert image[0, 0, 0] == int(output_stem(path))  # the image belongs to its path
    assert [len(b.paths) for b in batches][0] == 3  # the first three 8x8 images went together
    assert len(failures) == 1 and failures.items[0][0] == str(bad)
    stream = io.StringIO()
    failures.report(total=len(paths), stream=stream)
    assert stream.getvalue().startswith("1 of 8 images failed:") and "bad.png" in stream.getvalue()


def test_progress_prints_rate_and_eta_every_tenth_off_a_terminal():
    stream = io.StringIO()
    with Progress(100, "predict", stream=stream) as progress:
        for _ in range(100):
            progress.update()
    lines = stream.getvalue().splitlines()
    assert 9 <= len(lines) <= 11
    assert lines[0].startswith("predict  10/100 [##") and "img/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("predict  100/100 [####################]")
    stream = io.StringIO()
    with Progress(None, "eval", stream=stream) as progress:
        progress.update(3)
    assert stream.getvalue().startswith("eval  3  ") and "ETA" not in stream.getvalue()


def test_atomic_save_leaves_nothing_behind_on_failure(tmp_path):
    path = str(tmp_path / "out" / "a.png")

    def broken(tmp):
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save(path, broken)
    assert os.listdir(tmp_path / "out") == []
    atomic_save(path, lambda tmp: Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp))
    assert os.listdir(tmp_path / "out") == ["a.png"] and Image.open(path).size == (2, 2)
    assert outputs_exist(str(tmp_path / "out"), "a", [".png"])
    assert not outputs_exist(str(tmp_path / "out"), "a", [".png", ".json"])
