"""The one treatment every segzoo layer and model gets in the tests.

    from tests.layer_testing import check_layer, check_model_round_trip

`check_layer` builds the layer, calls it eagerly and symbolically, round-trips
its config, saves a model holding it as `.keras` and loads it back with
`safe_mode=True` (outputs must be equal), and runs one `fit` step when the
layer has trainable weights.
"""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _assert_nested_close(a, b, atol, rtol):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for key in a:
            _assert_nested_close(a[key], b[key], atol, rtol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_nested_close(x, y, atol, rtol)
    else:
        np.testing.assert_allclose(_to_numpy(a), _to_numpy(b), atol=atol, rtol=rtol)


def check_layer(
    layer_cls,
    init_kwargs: dict,
    inputs,
    *,
    expected_output_shape=None,
    run_fit: bool = True,
    atol: float = 1e-6,
    rtol: float = 1e-6,
):
    """Config round-trip, eager + symbolic call, .keras save/load, one fit step.

    Args:
        layer_cls: the Layer class.
        init_kwargs: constructor keyword arguments.
        inputs: a numpy array or a list of them (the layer's call arguments,
            positional, batch dimension first).
        expected_output_shape: tuple (or list of tuples) the eager output must have.
    Returns:
        the eager output of the freshly built layer.
    """
    inputs = _as_list(inputs)
    layer = layer_cls(**init_kwargs)

    # Config round-trip: every constructor argument comes back.
    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"{layer_cls.__name__}.get_config() lacks {key!r}"
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config

    # Eager call.
    eager = layer(*[keras.ops.convert_to_tensor(x) for x in inputs])
    if expected_output_shape is not None:
        shapes = [tuple(o.shape) for o in _as_list(eager)]
        expected = _as_list(expected_output_shape) if isinstance(
            expected_output_shape, list) else [expected_output_shape]
        assert shapes == [tuple(s) for s in expected], (shapes, expected)

    # Symbolic call inside a functional model, then .keras round-trip.
    symbolic_inputs = [
        keras.Input(shape=x.shape[1:], batch_size=x.shape[0], dtype=str(x.dtype)) for x in inputs
    ]
    model = keras.Model(symbolic_inputs, layer(*symbolic_inputs))
    before = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    _assert_nested_close(eager, before, atol=max(atol, 1e-5), rtol=max(rtol, 1e-5))
    after = check_model_round_trip(model, inputs if len(inputs) > 1 else inputs[0], atol, rtol)

    # One fit step when there is something to train.
    if run_fit and model.trainable_weights:
        target = keras.tree.map_structure(np.zeros_like, before)
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(inputs if len(inputs) > 1 else inputs[0], target, epochs=1,
                            batch_size=inputs[0].shape[0], verbose=0)
        assert np.isfinite(history.history["loss"][0])
    return after


def check_model_round_trip(model, inputs, atol=1e-6, rtol=1e-6):
    """Saves `model` as .keras, loads it with safe_mode=True, compares outputs."""
    before = model.predict(inputs, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    after = loaded.predict(inputs, verbose=0)
    _assert_nested_close(before, after, atol, rtol)
    return after
