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


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_unet_in_bfloat16_learns_as_in_float32(tmp_path):
    """#11: the same U-Net learning run (same seed, recipe and step count) under
    `--precision bfloat16` reaches the float32 run's val mIoU within 0.02."""
    runs = {}
    for precision in ("float32", "bfloat16"):
        runs[precision] = train_then_eval(
            tmp_path / precision, "unet", "base_filters=16", image_size=64, minutes=None,
            train_timeout=3000, eval_timeout=300,
            extra_args=["--precision", precision, "--epochs", "12", "--steps-per-epoch", "128"])
    (f32, f32_eval), (bf16, bf16_eval) = runs["float32"], runs["bfloat16"]
    assert bf16["precision"] == "bfloat16" and f32["precision"] == "float32"
    # the in-training validation computes in the run's precision
    assert f32["best"]["value"] >= 0.8, f32["best"]
    assert bf16["best"]["value"] == pytest.approx(f32["best"]["value"], abs=0.02)
    # the bfloat16-trained weights evaluated in float32 (`segzoo eval`'s default)
    assert bf16_eval["mean_iou"] == pytest.approx(f32_eval["mean_iou"], abs=0.02)
