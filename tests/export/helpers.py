"""Runs an exported SavedModel in a fresh Python process that cannot import segzoo.

The child process blocks every `segzoo` import (a meta-path finder that raises),
runs from a scratch directory without PYTHONPATH, calls both serving signatures,
asserts at the end that no segzoo module was loaded, and sends the outputs back
through an `.npz` file.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import numpy as np
from PIL import Image

CHILD = r'''
import importlib.abc, os, pickle, sys

class BlockSegzoo(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "segzoo" or name.startswith("segzoo."):
            raise ImportError("segzoo must not be imported when serving an export")
        return None

sys.meta_path.insert(0, BlockSegzoo())
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.abspath(REPO)]
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf

try:
    import segzoo  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("segzoo was importable in the serving process")

with open(INPUTS, "rb") as f:
    inputs = pickle.load(f)
loaded = tf.saved_model.load(EXPORT)
results = {"signatures": sorted(loaded.signatures.keys())}
default = loaded.signatures["serving_default"](images=tf.constant(inputs["images"]))
results["serving_default"] = {k: v.numpy() for k, v in default.items()}
encoded = loaded.signatures["serving_bytes"](image_bytes=tf.constant(inputs["image_bytes"]))
results["serving_bytes"] = {k: v.numpy() for k, v in encoded.items()}
results["class_names"] = [n.decode() for n in loaded.class_names().numpy()]
results["category_ids"] = loaded.category_ids().numpy().tolist()
with open(os.path.join(EXPORT, "assets", "class_names.txt"), encoding="utf-8") as f:
    results["class_names_asset"] = f.read().splitlines()
assert not any(m == "segzoo" or m.startswith("segzoo.") for m in sys.modules), "segzoo loaded"
results["segzoo_modules"] = [m for m in sys.modules if m.startswith("segzoo")]
with open(OUTPUTS, "wb") as f:
    pickle.dump(results, f)
'''

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def keras_probabilities(model, images):
    """Softmax (float64) of a semantic model's logits for float pixels `images` [B, H, W, C]."""
    import keras

    logits = keras.ops.convert_to_numpy(model(images.astype(np.float32), training=False))
    logits = logits.astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def serve_in_clean_process(export_dir, images: np.ndarray, image_bytes: list[bytes], tmp_path,
                           timeout=600) -> dict:
    """Calls `serving_default(images)` and `serving_bytes(image_bytes)` in a process without segzoo."""
    inputs, outputs = tmp_path / "serve_inputs.pkl", tmp_path / "serve_outputs.pkl"
    with open(inputs, "wb") as f:
        pickle.dump({"images": images, "image_bytes": image_bytes}, f)
    script = (f"REPO = {REPO!r}\nEXPORT = {os.fspath(export_dir)!r}\n"
              f"INPUTS = {os.fspath(inputs)!r}\nOUTPUTS = {os.fspath(outputs)!r}\n" + CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    with open(outputs, "rb") as f:
        return pickle.load(f)


def saved_model_cli_show(export_dir) -> str:
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    completed = subprocess.run([cli, "show", "--dir", os.fspath(export_dir), "--all"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout
