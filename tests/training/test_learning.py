"""Learning check (slow tier): U-Net 16 on shapes reaches val mIoU >= 0.85 in 5 CPU minutes via the CLI."""

import pytest

from tests.learning import train_then_eval


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_unet_on_shapes_reaches_085_miou_within_5_minutes(tmp_path):
    metrics, result = train_then_eval(tmp_path / "run", "unet", "base_filters=16", image_size=64,
                                      minutes=5, train_timeout=840, eval_timeout=300)
    assert metrics["recipe"]["name"] == "shapes_unet"
    assert metrics["train_seconds"] <= 5 * 60 + 120  # the limit, plus the last validation
    assert metrics["best"]["value"] >= 0.85, metrics["best"]
    # The independent evaluator agrees with the in-training metric on the best checkpoint.
    assert result["mean_iou"] == pytest.approx(metrics["best"]["value"], abs=1e-4)
