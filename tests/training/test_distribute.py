"""tf.distribute: mirrored over two logical CPUs and two workers on loopback match one process.

Each case runs in fresh subprocesses (logical devices and TF_CONFIG must be set
before TensorFlow starts). The model has no batch norm and the batch has no
ignored pixel, so the replicas' averaged gradients equal the one-process
gradient of the whole batch up to float summation order.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import tensorflow as tf
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tests.training import tiny_model
    from segzoo.training.fit import train
    recipe = tiny_model.tiny_recipe(optimizer="sgd", learning_rate=0.5, momentum=0.9)
    strategy = {"single": "default", "mirrored": "mirrored", "worker": "multi_worker"}[mode]
    result = train({"model": "tiny_segmenter", "recipe": recipe, "out": out + "_run",
                    "strategy": strategy, "verbose": 0})
    assert result.info["replicas"] == (1 if mode == "single" else 2), result.info["replicas"]
    np.savez(out + ".npz", *result.model.get_weights())
""")


def _run(args, tmp_path, env=None, wait=True):
    script = tmp_path / "dist_script.py"
    script.write_text(SCRIPT)
    full_env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    process = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=full_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return process
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return process


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    _run(["single", str(tmp / "single")], tmp)
    weights = _weights(tmp / "single.npz")
    # Training moved the weights (otherwise equality would prove nothing).
    assert any(np.abs(w).sum() > 0 for w in weights[-2:])
    return weights


@pytest.mark.slow
def test_mirrored_two_logical_cpus_matches_one_process(tmp_path, single_process):
    _run(["mirrored", str(tmp_path / "mirrored")], tmp_path)
    _assert_same(_weights(tmp_path / "mirrored.npz"), single_process)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_on_loopback_match_one_process(tmp_path, single_process):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_run(["worker", str(tmp_path / f"worker{index}")], tmp_path,
                              env={"TF_CONFIG": json.dumps(config)}, wait=False))
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    # Both workers hold the same weights, equal to one process's; only the chief wrote a run.
    _assert_same(_weights(tmp_path / "worker0.npz"), single_process)
    _assert_same(_weights(tmp_path / "worker1.npz"), single_process)
    assert os.path.exists(tmp_path / "worker0_run" / "model.keras")
    assert not os.path.exists(tmp_path / "worker1_run" / "model.keras")
