"""`segzoo predict` / `segzoo eval` as users type them: folders, globs, a corrupt file,
--resume, --tile (exact on one tile, seamless on many), --tta, instance RLE, --plots."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segzoo.cli import main
from segzoo.inference.tiling import sliding_window_labels
from segzoo.inference.tta import TTAConfig, probability_fn, tta_probabilities
from tests.export.tiny_models import TinyDetector, TinySegmenter

SHAPES = ["background", "circle", "rectangle", "triangle"]


@pytest.fixture(scope="module")
def semantic_checkpoint(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(5)
    model = TinySegmenter(num_classes=4, class_names=SHAPES, width=6)
    score = model.layers[-1]
    score.set_weights([w * 30.0 for w in score.get_weights()])  # confident, varied labels
    path = str(tmp_path_factory.mktemp("semantic") / "model.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def instance_checkpoint(tmp_path_factory):
    model = TinyDetector(num_classes=3, class_names=SHAPES, max_detections=4)
    model(np.zeros((1, 16, 16, 3), np.float32))
    path = str(tmp_path_factory.mktemp("instance") / "model.keras")
    model.save(path)
    return path


def _images(directory, sizes, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = os.path.join(directory, f"img{i:02d}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _labels(path):
    return np.asarray(Image.open(path))


def test_folder_with_a_corrupt_file_writes_the_others_and_fails_at_the_end(
        semantic_checkpoint, tmp_path, capsys):
    from segzoo.models.base import load_checkpoint

    paths = _images(str(tmp_path / "in"), [(24, 32)] * 5 + [(17, 21)] * 2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    code = main(["predict", "--checkpoint", semantic_checkpoint, str(tmp_path / "in"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "1 of 8 images failed:" in err and "broken.png" in err
    assert "predict  8/8 [####################]" in err and "img/s" in err
    fn = probability_fn(load_checkpoint(semantic_checkpoint))
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        image = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(_labels(out / f"{stem}.png"), fn(image[None])[0].argmax(-1))
        assert Image.open(out / f"{stem}_overlay.png").size == image.shape[1::-1]
    assert not (out / "broken.png").exists()
    assert sorted(os.listdir(out)) == sorted(f"img{i:02d}{s}" for i in range(7) for s in (".png", "_overlay.png"))


def test_resume_skips_written_outputs_and_redoes_missing_ones(semantic_checkpoint, tmp_path, capsys):
    _images(str(tmp_path / "in"), [(20, 20)] * 4)
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", semantic_checkpoint, str(tmp_path / "in" / "*.png"), "--out", str(out)]
    assert main(args) == 0
    os.remove(out / "img02_overlay.png")
    before = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "resume: 3 of 4 images already written, 1 to go" in err
    after = {n: os.stat(out / n).st_mtime_ns for n in os.listdir(out)}
    assert set(after) == set(before) | {"img02_overlay.png"}
    assert all(after[n] == before[n] for n in before if not n.startswith("img02"))


def test_tiled_equals_untiled_on_one_tile_images_and_is_seamless_on_wide_ones(
        semantic_checkpoint, tmp_path):
    from segzoo.models.base import load_checkpoint

    _images(str(tmp_path / "small"), [(64, 64), (40, 64), (64, 33), (1, 1)])
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["predict", "--checkpoint", semantic_checkpoint, str(tmp_path / "small"), "--out", str(a)]) == 0
    assert main(["predict", "--checkpoint", semantic_checkpoint, str(tmp_path / "small"), "--out", str(b),
                 "--tile", "64", "--overlap", "16"]) == 0
    for name in sorted(os.listdir(a)):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    wide = _images(str(tmp_path / "wide"), [(40, 600)])[0]
    c = tmp_path / "c"
    assert main(["predict", "--checkpoint", semantic_checkpoint, wide, "--out", str(c),
                 "--tile", "32", "--overlap", "16"]) == 0
    image = np.asarray(Image.open(wide).convert("RGB"))
    fn = probability_fn(load_checkpoint(semantic_checkpoint))
    got = _labels(c / "img00.png")
    np.testing.assert_array_equal(got, sliding_window_labels(fn, image, 32, 16))
    assert (got == fn(image[None])[0].argmax(-1)).mean() > 0.995  # blended tiles ~ the whole image


def test_tta_flip_scales_predict_and_eval(semantic_checkpoint, tmp_path, capsys):
    import segzoo.data
    from segzoo.evaluation.semantic import ConfusionMatrix
    from segzoo.models.base import load_checkpoint

    path = _images(str(tmp_path / "in"), [(30, 44)])[0]
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", semantic_checkpoint, path, "--out", str(out),
                 "--tta", "flip,scales=0.75,1,1.25"]) == 0
    fn = probability_fn(load_checkpoint(semantic_checkpoint))
    image = np.asarray(Image.open(path).convert("RGB"))
    config = TTAConfig(flip=True, scales=(0.75, 1.0, 1.25))
    np.testing.assert_array_equal(_labels(out / "img00.png"),
                                  tta_probabilities(fn, image[None], config)[0].argmax(-1))

    capsys.readouterr()
    plots = tmp_path / "plots"
    assert main(["eval", "--checkpoint", semantic_checkpoint, "--max-images", "3", "--json",
                 "--tta", "flip", "--plots", str(plots)]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert "eval  3/3" in captured.err and "confusion_matrix.png" in captured.err
    cm = ConfusionMatrix(4)
    for element in segzoo.data.load("shapes", "val").take(3).as_numpy_iterator():
        probabilities = tta_probabilities(fn, element["image"][None], TTAConfig(flip=True))
        cm.update(element["mask"], probabilities[0].argmax(-1))
    assert result["mean_iou"] == pytest.approx(cm.metrics()["mean_iou"], rel=1e-9)
    assert sorted(os.listdir(plots)) == ["confusion_matrix.png", "per_class_iou.png"]


def test_instance_predict_writes_rle_masks_and_tiles_exactly_on_one_tile(instance_checkpoint, tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (48, 60, 3), dtype=np.uint8)
    image[10:30, 5:50, 0] = 250
    path = str(tmp_path / "scene.png")
    Image.fromarray(image).save(path)
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["predict", "--checkpoint", instance_checkpoint, path, "--score-threshold", "0"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--out", str(b), "--tile", "64", "--overlap", "8"]) == 0
    for name in ("scene.png", "scene.json", "scene_overlay.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    detections = json.loads((a / "scene.json").read_text())["detections"]
    assert len(detections) == 3 and detections[0]["score"] >= detections[-1]["score"]
    ids = np.asarray(Image.open(a / "scene.png"))
    for i, detection in enumerate(detections):
        assert detection["class_name"] in SHAPES[1:] and detection["mask"]["size"] == [48, 60]
        mask = mask_utils.decode({"size": detection["mask"]["size"],
                                  "counts": detection["mask"]["counts"].encode()})
        assert mask.shape == (48, 60)
        assert ((ids == i + 1) <= (mask == 1)).all()  # each id painted only inside its own mask
    assert (ids > 0).any()

    c = tmp_path / "c"
    assert main([*common, "--out", str(c), "--tile", "32", "--overlap", "8"]) == 0
    tiled = json.loads((c / "scene.json").read_text())["detections"]
    assert tiled and all(0 <= d["box"][0] <= d["box"][2] <= 60 and 0 <= d["box"][1] <= d["box"][3] <= 48
                         for d in tiled)


def test_bad_flags_exit_2_with_a_message(semantic_checkpoint, instance_checkpoint, tmp_path, capsys):
    path = _images(str(tmp_path / "in"), [(8, 8)])[0]
    base = ["predict", "--checkpoint", semantic_checkpoint, path, "--out", str(tmp_path / "o")]
    # the library's messages name tta= / tile_size= / overlap=; the CLI shows the flags
    for extra, message in ((["--tta", "flop"], "error: --tta flop: unknown item 'flop'; expected flip"),
                           (["--tile", "16", "--overlap", "16"],
                            "error: --overlap must be >= 0 and < --tile 16, got 16"),
                           (["--tile", "0"], "error: --tile must be a positive number of pixels"),
                           (["--overlap", "4"], "needs --tile")):
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", "--checkpoint", instance_checkpoint, path, "--out", str(tmp_path / "o"),
                 "--tta", "flip"]) == 2
    assert "error: --tta applies to semantic models" in capsys.readouterr().err
    assert main([*base[:3], str(tmp_path / "nothing*.png"), *base[4:]]) == 2
    assert "matches no image" in capsys.readouterr().err
