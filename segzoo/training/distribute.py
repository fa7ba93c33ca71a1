"""`--strategy default|one_device|mirrored|multi_worker` as a `tf.distribute.Strategy`.

- default: TensorFlow's default strategy (one device, no replication).
- one_device: everything on the first GPU, or the CPU when there is none.
- mirrored: synchronous data parallelism over all local GPUs, or over all
  logical CPU devices when there is no GPU (tests split the CPU in two with
  `tf.config.set_logical_device_configuration`).
- multi_worker: `MultiWorkerMirroredStrategy`, cluster read from the
  `TF_CONFIG` environment variable (one process per worker; every worker runs
  the same command; the chief writes the run directory).
"""

from __future__ import annotations

import contextlib
import json
import os

import tensorflow as tf

from segzoo.errors import ArgumentError, arg

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


def get_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Builds the strategy `name` (see module docstring).

    Raises:
        ValueError: unknown name, or multi_worker without a usable TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        config = _tf_config()
        if not config.get("cluster") or "task" not in config:
            raise ArgumentError(
                f"{arg('strategy', 'multi_worker')} needs TF_CONFIG with 'cluster' and 'task', e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}; got '
                f"{os.environ.get('TF_CONFIG')!r}"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    # (after multi_worker: listing devices starts TensorFlow, which must not have
    # happened before MultiWorkerMirroredStrategy configures its collectives)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    raise ArgumentError(f"{arg('strategy')} must be one of {STRATEGIES}, got {name!r}")


def _tf_config() -> dict:
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}: {text!r}") from error


def worker_info(strategy: tf.distribute.Strategy | None = None) -> tuple[bool, int]:
    """(is_chief, worker_index) of this process.

    The chief is the task of type "chief", or worker 0 when the cluster has no
    chief; without TF_CONFIG (single process) this process is the chief.
    """
    config = _tf_config()
    task = config.get("task") or {}
    if not task:
        return True, 0
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    if task_type == "chief":
        return True, 0
    has_chief = "chief" in (config.get("cluster") or {})
    return (task_type == "worker" and index == 0 and not has_chief), index


@contextlib.contextmanager
def keras_multi_worker_fixes(model, strategy):
    """Makes `model.fit` work under MultiWorkerMirroredStrategy with Keras 3.15 (TF backend).

    Two Keras 3.15 defects break `fit` there; both are patched only inside this
    context and only for that strategy (other strategies are left untouched):

    1. `_maybe_symbolic_build` calls `strategy.reduce("MEAN", batch)` eagerly on
       the first distributed input batch just to learn its shapes, which fails
       for a cross-worker `PerReplica` ("Attempt to convert a value
       (PerReplica...)"). The model instance gets an override that reads this
       worker's local batch instead (same shapes).
    2. `reduce_per_replica` reduces every log value with
       `strategy.reduce("MEAN", v, axis=0)`, which fails for the scalar losses and
       metrics ("Invalid reduction dimension 0 for input with 0 dimensions").
       Scalars are reduced with `axis=None` instead (the mean over workers).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    original_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy_, reduction):
        def reduce_one(value):
            if reduction in ("auto", "mean") and local(value).shape.rank == 0:
                return strategy_.reduce("MEAN", value, axis=None)
            return original_reduce(value, strategy_, reduction)

        return tf.nest.map_structure(reduce_one, values)

    model._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original_reduce
        del model._maybe_symbolic_build
