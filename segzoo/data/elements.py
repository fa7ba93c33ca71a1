"""Dataset elements computed in Python: `tf.numpy_function` with the element's static shapes.

The loaders (`coco`, `folder`, `shapes`) read or generate one image in numpy
from an index; `numpy_element` runs that inside `tf.data` and gives the
outputs their dtypes and known dimensions (the element format of
`segzoo.data.registry`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from segzoo.data.service import shard_indices

# image uint8 [H, W, 3], mask uint8 [H, W] (class ids, 255 = ignore).
SEMANTIC = {
    "image": tf.TensorSpec([None, None, 3], tf.uint8),
    "mask": tf.TensorSpec([None, None], tf.uint8),
}
# boxes float32 [N, 4] xyxy pixels, classes int32 [N] in 1..K, masks uint8 [N, H, W].
INSTANCE = {
    "image": tf.TensorSpec([None, None, 3], tf.uint8),
    "boxes": tf.TensorSpec([None, 4], tf.float32),
    "classes": tf.TensorSpec([None], tf.int32),
    "masks": tf.TensorSpec([None, None, None], tf.uint8),
}




def with_keypoints(spec: dict, num_keypoints: int) -> dict:
    """`spec` plus "keypoints": float32 [N, K, 3] (x, y pixels, v 0/1/2), K = `num_keypoints`."""
    return {**spec, "keypoints": tf.TensorSpec([None, int(num_keypoints), 3], tf.float32)}


def numpy_element(fn, index, spec) -> dict:
    """`fn(index)` (numpy, returning one array per entry of `spec`, in its order) as a dict
    of tensors with `spec`'s dtypes and static shapes; for use inside `Dataset.map`."""
    specs = list(spec.values())
    values = tf.numpy_function(fn, [index], [s.dtype for s in specs], stateful=False)
    for value, s in zip(values, specs, strict=True):
        value.set_shape(s.shape)
    return dict(zip(spec, values, strict=True))


def numpy_dataset(read, image_ids, spec) -> tf.data.Dataset:
    """The dataset of `{**numpy_element(read, i, spec), "image_id": image_ids[i]}` for
    i = 0, 1, ... in order (parallel, deterministic map); `read(i)` gets an int64 index."""
    indices = np.arange(len(image_ids), dtype=np.int64)
    # Under sharded_reading (MultiWorkerMirroredStrategy) each worker reads its own images.
    ds = shard_indices(tf.data.Dataset.from_tensor_slices((indices, image_ids)))

    def to_element(index, image_id):
        return {**numpy_element(read, index, spec), "image_id": image_id}

    return ds.map(to_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
