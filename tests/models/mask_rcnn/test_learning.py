"""Learning check (slow tier): Mask R-CNN R18 on shapes reaches mask AP50 >= 0.8 in 15 CPU minutes."""

import pytest

from tests.learning import train_then_eval


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mask_rcnn_on_shapes_reaches_mask_ap50_080_within_15_minutes(tmp_path):
    metrics, result = train_then_eval(tmp_path / "run", "mask_rcnn", "backbone=resnet18",
                                      image_size=128, minutes=15, train_timeout=1500,
                                      eval_timeout=600)
    assert metrics["recipe"]["name"] == "shapes_mask_rcnn"
    assert metrics["train_seconds"] <= 15 * 60 + 120
    assert result["mask_ap50"] >= 0.8, result
