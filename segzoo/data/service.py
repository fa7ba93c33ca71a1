"""Input at scale: a tf.data service for preprocessing, and per-worker sharding of the files.

    segzoo train unet --data folder --data-dir DIR --data-service grpc://dispatcher:5050

    from segzoo.data.service import distribute, local_service, sharded_reading
    ds = distribute(train_ds, "grpc://127.0.0.1:5050")   # workers of that dispatcher preprocess
    with local_service() as address:                     # a dispatcher + a worker in this process
        ...
    with sharded_reading(num_workers, worker_index):     # indexed datasets read 1 / num of files
        train_ds = segzoo.data.load("coco", "train2017", data_dir=...)

`--data-service ADDRESS` hands the training pipeline (reading, decoding,
augmentation, batching) to the workers of a tf.data service dispatcher
(`tf.data.experimental.service.distribute`, processing mode
"parallel_epochs": every worker runs the whole pipeline and the trainer takes
batches from all of them), for when one machine's CPUs cannot feed its
accelerators. Start a dispatcher and workers with
`tf.data.experimental.service.DispatchServer` / `WorkerServer`; the worker
processes need segzoo importable, since the pipeline's image reading is a
Python function (`tf.numpy_function`) that runs where the worker runs.

Under `MultiWorkerMirroredStrategy` each worker reads its own shard of the
files: inside `sharded_reading(n, i)` the indexed datasets (coco, folder and
the others built on `segzoo.data.elements.numpy_dataset`) keep image i, i + n,
... before reading any file, instead of tf.data's default auto-sharding, which
for these datasets falls back to reading every file and discarding most.
"""

from __future__ import annotations

import contextlib
import re
import threading

import tensorflow as tf

from segzoo.errors import ArgumentError, arg

_ADDRESS = re.compile(r"^(grpc://)?([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")
_SHARD = threading.local()


def parse_address(address) -> str:
    """`grpc://HOST:PORT` (or `HOST:PORT`) -> `grpc://HOST:PORT`.

    Raises:
        ValueError: not HOST:PORT with a port 1..65535.
    """
    match = _ADDRESS.match(str(address or "").strip())
    if not match or not 0 < int(match.group(3)) < 65536:
        raise ArgumentError(f"{arg('data_service', address)}: expected a dispatcher address "
                            "grpc://HOST:PORT (e.g. grpc://127.0.0.1:5050)")
    return f"grpc://{match.group(2)}:{match.group(3)}"


def distribute(dataset, address, *, job_name=None, processing_mode="parallel_epochs"):
    """`dataset` produced by the tf.data service at `address` (tf.data's distributed engine).

    Args:
        dataset: the pipeline to run on the service workers (as built locally).
        address: the dispatcher, `grpc://HOST:PORT`.
        job_name: consumers with the same name share one job (one pass of
            the data split between them); None gives each consumer its own.
        processing_mode: "parallel_epochs" (each worker the whole dataset) or
            "distributed_epoch" (one epoch split over the workers; needs a
            splittable source).
    """
    return dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=processing_mode, service=parse_address(address), job_name=job_name))


@contextlib.contextmanager
def local_service(num_workers=1):
    """A dispatcher and `num_workers` workers on 127.0.0.1 in this process; yields the address.

    For tests and single-machine benchmarks; the servers stop on exit.
    """
    dispatcher = tf.data.experimental.service.DispatchServer()
    host = dispatcher.target.split("://", 1)[1]
    workers = [tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=host))
        for _ in range(num_workers)]
    try:
        yield dispatcher.target
    finally:
        for worker in workers:
            worker.stop()
        dispatcher.stop()


@contextlib.contextmanager
def sharded_reading(num_shards, index):
    """Indexed datasets built inside read only shard `index` of `num_shards` (see module doc)."""
    num_shards, index = int(num_shards), int(index)
    if num_shards < 1 or not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} of {num_shards}: expected 0 <= index < num_shards")
    previous = getattr(_SHARD, "value", None)
    _SHARD.value = (num_shards, index) if num_shards > 1 else None
    try:
        yield
    finally:
        _SHARD.value = previous


def current_shard():
    """(num_shards, index) inside `sharded_reading`, else None."""
    return getattr(_SHARD, "value", None)


def shard_indices(dataset):
    """`dataset.shard(num, index)` inside `sharded_reading(num, index)`, else `dataset`."""
    shard = current_shard()
    return dataset if shard is None else dataset.shard(*shard)


def without_auto_shard(dataset):
    """`dataset` with tf.distribute's auto-sharding off (it is sharded already, or served)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def input_shard(strategy):
    """(num_shards, index) of this process's input under MultiWorkerMirroredStrategy, else None."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    import json
    import os

    return cluster_shard(json.loads(os.environ.get("TF_CONFIG") or "{}"))


def cluster_shard(tf_config: dict):
    """(num_shards, index) for a TF_CONFIG dict: one shard per task, the chief (if any) first,
    then the workers in index order; None for a single task."""
    cluster, task = tf_config.get("cluster") or {}, tf_config.get("task") or {}
    chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
    if chiefs + workers <= 1 or not task:
        return None
    index = int(task.get("index", 0))
    return chiefs + workers, (index if task.get("type") == "chief" else chiefs + index)
