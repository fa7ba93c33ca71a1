"""`segzoo ablate` as the user types it: real models, tiny budgets; errors exit 2 with one line."""

import json

import pytest

from segzoo import cli
from segzoo.ablation.studies import FCN, MASK_RCNN


def _ablate_then_eval(capsys, family, argv, eval_images):
    assert cli.main(["ablate", *argv]) == 0
    out = argv[argv.index("--out") + 1]
    saved = json.load(open(f"{out}/ablation.json"))
    md = open(f"{out}/ablation.md").read().replace("**", "")
    assert open(f"{out}/ablation.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    checked = set()
    for record in saved["records"]:
        (seed,) = record["per_seed"]
        if seed["checkpoint"] in checked:
            continue
        checked.add(seed["checkpoint"])
        capsys.readouterr()
        assert cli.main(["eval", "--checkpoint", f"{out}/{seed['checkpoint']}", "--max-images",
                         str(eval_images), "--json"]) == 0
        fresh = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        cells = []
        for key, _ in family.metrics:
            assert record["metrics"][key] == pytest.approx(fresh[key], abs=1e-12), key
            cells.append(f"{100 * fresh[key]:.1f}")
        assert f"| {record['variant']} | " + " | ".join(cells) + " |" in md
    return saved


@pytest.mark.slow
def test_fcn_skips_staged_through_the_cli(tmp_path, capsys):
    out = str(tmp_path / "ablate-fcn")
    saved = _ablate_then_eval(capsys, FCN, ["fcn", "--studies", "skips", "--epochs", "1",
                                            "--steps-per-epoch", "1", "--eval-images", "1",
                                            "--out", out], 1)
    assert [r["run"] for r in saved["records"]] == [
        "fcn32s", "fcn16s-from-fcn32s", "fcn8s-from-fcn16s-from-fcn32s"]
    assert saved["records"][2]["model_args"] == {"base_filters": 8, "fc_channels": 256,
                                                 "upsampling": "bilinear_transposed"}
    assert "## skips" in open(f"{out}/ablation.md").read()


@pytest.mark.slow
def test_mask_rcnn_through_the_cli(tmp_path, capsys):
    out = str(tmp_path / "ablate-mrcnn")
    saved = _ablate_then_eval(capsys, MASK_RCNN, ["mask_rcnn", "--studies", "mask_loss,mask_head",
                                                  "--epochs", "1", "--steps-per-epoch", "2",
                                                  "--eval-images", "2", "--out", out], 2)
    assert [r["run"] for r in saved["records"]] == [
        "mask_rcnn", "mask_rcnn-mask_loss=softmax", "mask_rcnn", "mask_rcnn-class_agnostic_masks=True"]
    assert "| mask_loss | AP | AP50 | AP75 | APbb | APbb50 | APbb75 |" in open(f"{out}/ablation.md").read()


@pytest.mark.parametrize("argv, message", [
    (["mask_rcnn", "--studies", "roi_align"], "--studies roi_align: unknown study for mask_rcnn"),
    (["fcn", "--minutes", "5", "--epochs", "2"], "give --minutes or --epochs, not both"),
    (["fcn", "--seeds", "0"], "--seeds must be a positive integer, got 0"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert cli.main(["ablate", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segzoo ablate: error: ") and message in err and "\n" not in err
