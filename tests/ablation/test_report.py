"""Report aggregation over seeds, winners, claims and the three files, from given run results."""

import json

import numpy as np
import pytest

from segzoo.ablation import report
from segzoo.ablation.runner import variant_keys
from segzoo.ablation.studies import MASK_RCNN

ROI = MASK_RCNN.studies[0]
PLAN = {"settings": {"family": "mask_rcnn", "data": "shapes", "data_dir": None, "minutes": None,
                     "epochs": 1, "steps_per_epoch": None, "eval_images": None,
                     "recipe_overrides": {}}}


def _results(values):
    """values: {variant: [(mask_ap, mask_ap50, mask_ap75) per seed]} -> runner results."""
    keys = variant_keys(ROI)
    results = {}
    for name, seeds in values.items():
        for seed, (ap, ap50, ap75) in enumerate(seeds):
            metrics = {"mask_ap": ap, "mask_ap50": ap50, "mask_ap75": ap75, "box_ap": ap / 2,
                       "box_ap50": ap50 / 2, "box_ap75": ap75 / 2, "num_images": 64}
            results[(keys[name], seed)] = {
                "seed": seed, "metrics": metrics, "train_seconds": 10.0 + seed, "steps": 5,
                "epochs": 1.0, "checkpoint": f"runs/{keys[name]}/seed{seed}/model.keras"}
    return results


def test_seeds_aggregate_to_mean_and_sample_std(tmp_path):
    values = {"align": [(0.30, 0.50, 0.32), (0.34, 0.52, 0.36), (0.32, 0.51, 0.31)],
              "warp": [(0.28, 0.50, 0.27), (0.27, 0.49, 0.28), (0.29, 0.50, 0.26)],
              "pool": [(0.25, 0.48, 0.22), (0.26, 0.49, 0.23), (0.24, 0.47, 0.21)]}
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0, 1, 2], _results(values), PLAN)
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved == json.loads(json.dumps(content))
    by_variant = {r["variant"]: r for r in saved["records"]}
    for name, seeds in values.items():
        record = by_variant[name]
        ap = np.array([s[0] for s in seeds])
        assert record["metrics"]["mask_ap"] == pytest.approx(ap.mean())
        assert record["metrics_std"]["mask_ap"] == pytest.approx(ap.std(ddof=1))
        assert record["metrics"]["box_ap75"] == pytest.approx(np.mean([s[2] / 2 for s in seeds]))
        assert [p["seed"] for p in record["per_seed"]] == [0, 1, 2]
        assert record["train_seconds"] == pytest.approx(11.0)
        assert record["model_args"]["roi_pooler"] == name
    assert saved["winners"] == {"roi_pooler": "align"}
    claim = saved["claims"][0]
    assert claim["held"] is True and "every gap exceeds the seeds' spread" in claim["verdict"]
    md = (tmp_path / "ablation.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| **align"))
    assert "**32.0 ± 2.0**" in row and "**51.0 ± 1.0**" in row
    assert "| warp | 28.0 ± 1.0 |" in md
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claim_fails_when_the_largest_gain_is_not_at_ap75(tmp_path):
    values = {"align": [(0.40, 0.70, 0.40)], "warp": [(0.30, 0.50, 0.35)],
              "pool": [(0.30, 0.50, 0.35)]}
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0], _results(values), PLAN)
    claim = content["claims"][0]
    assert claim["held"] is False and "largest at mask_ap50" in claim["verdict"]
    assert "spread" not in claim["verdict"]  # one seed: no spread to compare with


def test_claim_fails_when_another_variant_wins_and_partial_results_are_undecided(tmp_path):
    values = {"align": [(0.20, 0.40, 0.20)], "warp": [(0.30, 0.50, 0.35)],
              "pool": [(0.10, 0.30, 0.05)]}
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0], _results(values), PLAN)
    assert content["winners"]["roi_pooler"] == "warp"
    assert content["claims"][0]["held"] is False
    assert "| **warp** | **30.0** |" in (tmp_path / "ablation.md").read_text()
    del values["pool"]
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0], _results(values), PLAN,
                                  partial=True)
    assert content["claims"][0]["held"] is None
    assert "Partial" in (tmp_path / "ablation.md").read_text()


def test_equal_scores_decide_nothing(tmp_path):
    values = {name: [(0.0, 0.0, 0.0)] for name in ("align", "warp", "pool")}
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0], _results(values), PLAN)
    assert content["claims"][0]["held"] is None
    assert "not decided: every variant has mask_ap 0.0" in content["claims"][0]["verdict"]


def test_a_tie_between_a_claimed_winner_and_another_variant_decides_nothing(tmp_path):
    values = {"align": [(0.2, 0.4, 0.2)], "warp": [(0.2, 0.5, 0.3)], "pool": [(0.1, 0.3, 0.1)]}
    content = report.write_report(str(tmp_path), MASK_RCNN, [ROI], [0], _results(values), PLAN)
    assert content["claims"][0]["held"] is None
    assert content["claims"][0]["verdict"] == "not decided: align, warp tie at mask_ap 20.0"
