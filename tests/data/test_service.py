"""--data-service (tf.data service, a dispatcher and a worker on 127.0.0.1 in this process)
and per-worker file sharding of the indexed datasets under MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import segzoo.data
from segzoo.data.service import (
    cluster_shard,
    distribute,
    local_service,
    parse_address,
    sharded_reading,
)


def test_parse_address():
    assert parse_address("127.0.0.1:5050") == "grpc://127.0.0.1:5050"
    assert parse_address("grpc://dispatcher.local:80") == "grpc://dispatcher.local:80"
    for bad in ("", "localhost", "grpc://host:0", "host:99999", "http://host:80"):
        with pytest.raises(ValueError, match="^data_service=.*grpc://HOST:PORT"):
            parse_address(bad)


def test_dataset_runs_on_a_local_dispatcher_and_worker():
    with local_service() as address:
        assert address.startswith("grpc://localhost:") or address.startswith("grpc://127.0.0.1:")
        ds = distribute(tf.data.Dataset.range(10).map(lambda x: x * x), address)
        assert sorted(int(v) for v in ds) == [i * i for i in range(10)]


def _folder(root, names):
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).save(
            root / "train" / "images" / f"{name}.png")
        Image.fromarray(rng.integers(0, 3, (8, 10), dtype=np.uint8)).save(
            root / "train" / "masks" / f"{name}.png")


def _ids(ds):
    return [element["image_id"].decode() if isinstance(element["image_id"], bytes)
            else str(element["image_id"]) for element in ds.as_numpy_iterator()]


def test_each_worker_reads_its_own_files(tmp_path):
    names = [f"img{i}" for i in range(7)]
    _folder(tmp_path, names)
    everything = _ids(segzoo.data.load("folder", "train", data_dir=str(tmp_path)))
    assert len(everything) == 7
    shards = []
    for index in range(3):
        with sharded_reading(3, index):
            ds = segzoo.data.load("folder", "train", data_dir=str(tmp_path))
        shards.append(_ids(ds))
    assert [len(s) for s in shards] == [3, 2, 2]
    assert sorted(sum(shards, [])) == sorted(everything)  # disjoint, complete
    # Sharded before reading: the graph shards the index, not the decoded images.
    with sharded_reading(3, 1):
        graph = segzoo.data.load("folder", "train", data_dir=str(tmp_path))
    graph = graph._as_serialized_graph().numpy()
    assert b"ShardDataset" in graph
    with pytest.raises(ValueError, match="shard index 3 of 3"):
        with sharded_reading(3, 3):
            pass


def test_cluster_shard_gives_every_task_its_own_shard():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert cluster_shard({"cluster": cluster, "task": {"type": "chief", "index": 0}}) == (3, 0)
    assert cluster_shard({"cluster": cluster, "task": {"type": "worker", "index": 1}}) == (3, 2)
    assert cluster_shard({"cluster": {"worker": ["b:1", "c:1"]},
                          "task": {"type": "worker", "index": 1}}) == (2, 1)
    assert cluster_shard({"cluster": {"worker": ["b:1"]}, "task": {"type": "worker"}}) is None
    assert cluster_shard({}) is None


def test_cli_names_the_data_service_flag(tmp_path, capsys):
    from segzoo import cli
    from tests.training import tiny_model  # noqa: F401 (registers tiny_segmenter)

    assert cli.main(["train", "tiny_segmenter", "--data-service", "nohost", "--epochs", "1",
                     "--steps-per-epoch", "1", "--batch-size", "2",
                     "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert ("segzoo train: error: --data-service nohost: expected a dispatcher address "
            "grpc://HOST:PORT") in err


def test_train_with_data_service(tmp_path):
    import dataclasses

    from segzoo.training.fit import train
    from tests.training import tiny_model

    recipe = dataclasses.replace(tiny_model.tiny_recipe(), epochs=1)
    with local_service() as address:
        result = train({"model": "tiny_segmenter", "recipe": recipe, "out": str(tmp_path / "run"),
                        "verbose": 0, "data_service": address})
    assert result.info["data_service"] == address
    assert np.isfinite(result.best_value)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and metrics["data_service"] == address
    with pytest.raises(ValueError, match="data_service='nohost'"):
        train({"model": "tiny_segmenter", "recipe": recipe, "out": str(tmp_path / "bad"),
               "verbose": 0, "data_service": "nohost"})
