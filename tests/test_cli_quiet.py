"""A plain `segzoo train` on a CPU machine prints segzoo's lines, not TensorFlow's start-up."""

import os
import subprocess
import sys

from segzoo.commands.quiet import is_startup_noise

# Start-up lines TensorFlow prints on a machine without a GPU (TF 2.21), verbatim.
STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796161176.260472   15197 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796161429.325653   18228 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1796161324.928212   15726 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1733000000.000000    1234 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors.",
]


def test_startup_lines_are_recognised_and_real_errors_are_not():
    assert all(is_startup_noise(line) for line in STARTUP_LINES)
    for line in ("E0000 00:00:1.0  1 op_kernel.cc:1857] OP_REQUIRES failed at conv_ops.cc: "
                 "INVALID_ARGUMENT: input depth must be evenly divisible by filter depth",
                 "Traceback (most recent call last):",
                 "ValueError: bad value"):
        assert not is_startup_noise(line)


def test_plain_train_shows_no_tensorflow_startup_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}  # as a user has it
    command = [sys.executable, "-m", "segzoo", "train", "unet", "--epochs", "1",
               "--steps-per-epoch", "1", "--batch-size", "1", "--image-size", "32",
               "--val-split", "", "--model-arg", "base_filters=2", "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "segzoo train: done" in result.stdout
    for marker in ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard", "oneDNN",
                   "To enable the following instructions", "cuda_"):
        assert marker not in result.stderr and marker not in result.stdout, result.stderr
    assert os.path.exists(tmp_path / "run" / "model.keras")
