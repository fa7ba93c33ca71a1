"""Learning check (slow tier): U-Net 16 on shapes reaches val mIoU >= 0.85 in 5 CPU minutes via the CLI."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_unet_on_shapes_reaches_085_miou_within_5_minutes(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "segzoo", "train", "unet", "--model-arg", "base_filters=16",
               "--image-size", "64", "--time-limit", "5", "--out", str(run)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=840)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recipe"]["name"] == "shapes_unet"
    assert metrics["train_seconds"] <= 5 * 60 + 120  # the limit, plus the last validation
    assert metrics["best"]["value"] >= 0.85, metrics["best"]
    # The independent evaluator agrees with the in-training metric on the best checkpoint.
    done = subprocess.run([sys.executable, "-m", "segzoo", "eval", "--checkpoint",
                           str(run / "model.keras"), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mean_iou"] == pytest.approx(metrics["best"]["value"], abs=1e-4)
