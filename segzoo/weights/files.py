"""Atomic writes of converted weights (a crash never leaves a half-written file)."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_path(path: str, suffix: str):
    """Yields a temporary path ending in `suffix` beside `path`; renamed onto `path` on success.

    The temporary file is removed if the block raises.
    """
    path = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def save_weights_atomic(model, path: str) -> str:
    """`model.save_weights(path)` (a ``.weights.h5``) through a temporary file; returns `path`."""
    if not str(path).endswith(".weights.h5"):
        raise ValueError(f"{path!r}: a backbone is written as a Keras `.weights.h5` file")
    with atomic_path(path, ".weights.h5") as tmp:
        model.save_weights(tmp)
    return os.path.abspath(path)


def save_model_atomic(model, path: str) -> str:
    """`model.save(path)` (a ``.keras``) through a temporary file; returns `path`."""
    if not str(path).endswith(".keras"):
        raise ValueError(f"{path!r}: a converted model is written as a Keras `.keras` file")
    with atomic_path(path, ".keras") as tmp:
        model.save(tmp)
    return os.path.abspath(path)
