"""Shared driver of the slow-tier learning checks: train a model with the CLI, then evaluate it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_then_eval(run_dir, model, model_arg, image_size, minutes, train_timeout, eval_timeout):
    """`segzoo train MODEL --model-arg MODEL_ARG --image-size S --time-limit MINUTES --out RUN_DIR`
    on CPU, then `segzoo eval --checkpoint RUN_DIR/model.keras --json`.

    Returns:
        (the run's metrics.json as a dict, the eval's JSON result as a dict); fails the test
        with the commands' output tails when either exits non-zero.
    """
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "segzoo", "train", model, "--model-arg", model_arg,
               "--image-size", str(image_size), "--time-limit", str(minutes),
               "--out", str(run_dir)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=train_timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    command = [sys.executable, "-m", "segzoo", "eval", "--checkpoint",
               str(run_dir / "model.keras"), "--json"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=eval_timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return metrics, json.loads(done.stdout.strip().splitlines()[-1])
