"""The export path of RoIAlign / RoIPool / the FPN level mapper (`roi_export_mode`):
float32 only, tensors of rank <= 5 (what TFLite builtins take), equal to the exact path within 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from segzoo.blocks import assign_fpn_levels, multilevel_roi_align, roi_align, roi_pool
from segzoo.blocks.roi_sampling import export_mode, roi_export_mode


def _boxes(rng, count, limit, max_size):
    boxes = rng.uniform(-4, limit, (count, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(0.5, max_size, (count, 2)).astype(np.float32)
    return boxes


def _walk(graph, seen=None):
    """Every op of `graph` and of the function bodies (while / cond / map_fn) it calls."""
    seen = set() if seen is None else seen
    for op in graph.get_operations():
        yield op
        for name in ("body", "cond", "then_branch", "else_branch", "f"):
            try:
                fn_name = op.get_attr(name).name
            except (ValueError, AttributeError):
                continue
            if fn_name in seen:
                continue
            seen.add(fn_name)
            function = graph._get_function(fn_name)
            if function is not None:
                yield from _walk(function.graph, seen)


def _graph_facts(fn, *specs, export=True):
    """(dtypes, largest rank, op count) over every op output of `fn` traced in (export) mode."""
    with roi_export_mode(export):
        graph = tf.function(fn).get_concrete_function(*specs).graph
    dtypes, rank, count = set(), 0, 0
    for op in _walk(graph):
        count += 1
        for t in op.outputs:
            dtypes.add(t.dtype.name)
            if t.shape.rank is not None:
                rank = max(rank, t.shape.rank)
    return dtypes, rank, count


@pytest.mark.parametrize("sampling_ratio, aligned", [(2, True), (-1, True), (2, False)])
def test_roi_align_export_path_equals_the_exact_path(sampling_ratio, aligned):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 20, 24, 8)).astype(np.float32)
    boxes = _boxes(rng, 40, 80, 70)
    indices = rng.integers(0, 2, 40).astype(np.int32)
    exact = roi_align(features, boxes, indices, (7, 5), spatial_scale=0.25,
                      sampling_ratio=sampling_ratio, aligned=aligned).numpy()
    with roi_export_mode():
        assert export_mode()
        exported = roi_align(features, boxes, indices, (7, 5), spatial_scale=0.25,
                             sampling_ratio=sampling_ratio, aligned=aligned).numpy()
    assert not export_mode()
    np.testing.assert_allclose(exported, exact, atol=1e-4)
    assert np.abs(exact).max() > 0.1  # the boxes do sample the map


def test_multilevel_align_pool_and_levels_in_export_mode():
    rng = np.random.default_rng(1)
    features = [rng.normal(size=(1, 64 // 2**i, 64 // 2**i, 4)).astype(np.float32)
                for i in range(4)]
    boxes = _boxes(rng, 50, 200, 250)
    indices = np.zeros(50, np.int32)
    exact = multilevel_roi_align(features, boxes, indices, 7, sampling_ratio=2).numpy()
    levels = assign_fpn_levels(boxes, 2, 5).numpy()
    pooled = roi_pool(features[0], boxes, indices, 7, spatial_scale=0.25).numpy()
    with roi_export_mode():
        np.testing.assert_allclose(
            multilevel_roi_align(features, boxes, indices, 7, sampling_ratio=2).numpy(), exact,
            atol=1e-4)
        np.testing.assert_array_equal(assign_fpn_levels(boxes, 2, 5).numpy(), levels)
        np.testing.assert_allclose(roi_pool(features[0], boxes, indices, 7,
                                            spatial_scale=0.25).numpy(), pooled, atol=1e-4)
    # Powers of two land on their level in float32 too (224 px -> level 4, 112 -> 3).
    squares = np.array([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448]], np.float32)
    with roi_export_mode():
        assert assign_fpn_levels(squares, 2, 5).numpy().tolist() == [4, 3, 5]


def test_export_graph_is_float32_and_at_most_5d():
    features = tf.TensorSpec([1, None, None, 8], tf.float32)
    boxes = tf.TensorSpec([None, 4], tf.float32)
    indices = tf.TensorSpec([None], tf.int32)

    def align(f, b, i):
        return roi_align(f, b, i, 14, spatial_scale=0.25, sampling_ratio=2)

    dtypes, rank, count = _graph_facts(align, features, boxes, indices)
    assert "float64" not in dtypes and rank <= 5, (dtypes, rank)
    # The exact path does use float64 and 7-D tensors (in the chunk loop's body): the walk
    # sees inside the loops.
    exact_dtypes, exact_rank, exact_count = _graph_facts(align, features, boxes, indices,
                                                         export=False)
    assert "float64" in exact_dtypes and exact_rank == 7
    assert count > 50 and exact_count > 50

    def levels(b):
        return assign_fpn_levels(b, 2, 5)

    assert "float64" not in _graph_facts(levels, boxes)[0]
    assert "float64" in _graph_facts(levels, boxes, export=False)[0]
