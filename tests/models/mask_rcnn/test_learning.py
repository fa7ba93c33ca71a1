"""Learning check (slow tier): Mask R-CNN R18 on shapes reaches mask AP50 >= 0.8 in 15 CPU minutes."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_mask_rcnn_on_shapes_reaches_mask_ap50_080_within_15_minutes(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "segzoo", "train", "mask_rcnn", "--model-arg", "backbone=resnet18",
               "--image-size", "128", "--time-limit", "15", "--out", str(run)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recipe"]["name"] == "shapes_mask_rcnn"
    assert metrics["train_seconds"] <= 15 * 60 + 120
    done = subprocess.run([sys.executable, "-m", "segzoo", "eval", "--checkpoint", str(run / "model.keras"),
                           "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["mask_ap50"] >= 0.8, result
