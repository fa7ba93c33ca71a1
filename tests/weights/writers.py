"""Test-side writers of torch ``.pth`` (zip format) and Caffe ``.caffemodel`` files.

For full-size synthetic weights in the default tier, where committing a real
file is out of the question. They emit exactly the structures the real tools
write (the readers are separately checked on files written by torch and by
protobuf from caffe.proto, see tests/fixtures/weights/make_fixtures.py):

- torch: a zip ``archive/{data.pkl, data/KEY, version, byteorder}``; the
  pickle (protocol 2) is ``collections.OrderedDict`` filled with
  ``torch._utils._rebuild_tensor_v2((BINPERSID 'storage', torch.FloatStorage,
  key, 'cpu', numel), 0, size, stride, False, OrderedDict())``.
- Caffe: NetParameter ``layer`` (100) entries with name (1), type (2), blobs (7);
  BlobProto shape (7, packed int64 dim 1) and packed float data (5).
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

_STORAGE = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage",
            np.dtype("float16"): "HalfStorage", np.dtype("int32"): "IntStorage"}


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text):
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value):
    return b"J" + struct.pack("<i", value)


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def _ordered_dict():
    return _global("collections", "OrderedDict") + b")R"


def write_torch_zip(path, state_dict, prefix="archive"):
    """Writes ``{key: np.ndarray}`` as ``torch.save`` does (zip format, one storage a tensor)."""
    body = [b"\x80\x02", _ordered_dict(), b"("]
    storages = {}
    for index, (key, value) in enumerate(state_dict.items()):
        value = np.array(value, order="C")
        storages[str(index)] = value
        stride = [int(s // value.itemsize) for s in value.strides] if value.ndim else []
        pid = _tuple([_str("storage"), _global("torch", _STORAGE[value.dtype]), _str(str(index)),
                      _str("cpu"), _int(value.size)]) + b"Q"
        args = _tuple([pid, _int(0), _tuple([_int(int(s)) for s in value.shape]),
                       _tuple([_int(s) for s in stride]), b"\x89", _ordered_dict()])
        body += [_str(key), _global("torch._utils", "_rebuild_tensor_v2"), args, b"R"]
    body += [b"u."]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{prefix}/data.pkl", b"".join(body))
        archive.writestr(f"{prefix}/byteorder", b"little")
        for key, value in storages.items():
            archive.writestr(f"{prefix}/data/{key}", value.astype(value.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{prefix}/version", b"3\n")
    return path


def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(array):
    dims = b"".join(_varint(int(d)) for d in array.shape)
    return _field(7, _field(1, dims)) + _field(5, np.asarray(array, "<f4").tobytes())


def write_caffemodel(path, layers, name="net"):
    """Writes ``[(name, type, [blob arrays]), ...]`` as a NetParameter (``layer`` field)."""
    with open(path, "wb") as f:
        f.write(_field(1, name.encode()))
        for layer_name, layer_type, blobs in layers:
            payload = _field(1, layer_name.encode()) + _field(2, layer_type.encode())
            payload += b"".join(_field(7, _blob(b)) for b in blobs)
            f.write(_field(100, payload))
    return path


def fcn_caffe_layers(arch, num_classes=21, seed=0):
    """Random voc-fcn{32,16,8}s blobs in Caffe's layout: [(name, type, [blobs])]."""
    generator = np.random.default_rng(seed)

    class _Uniform:  # uniform in [-0.5, 0.5): 4x faster than normals for 134 M values
        @staticmethod
        def standard_normal(shape, dtype):
            return generator.random(shape, dtype=dtype) - dtype(0.5)

    rng = _Uniform()
    layers, channels = [], 3
    for block, (filters, count) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), 1):
        for i in range(1, count + 1):
            w = rng.standard_normal((filters, channels, 3, 3), np.float32) * 0.05
            layers.append((f"conv{block}_{i}", "Convolution", [w, rng.standard_normal(filters, np.float32)]))
            channels = filters
    layers.append(("fc6", "Convolution", [rng.standard_normal((4096, 512, 7, 7), np.float32) * 0.01,
                                          rng.standard_normal(4096, np.float32)]))
    layers.append(("fc7", "Convolution", [rng.standard_normal((4096, 4096, 1, 1), np.float32) * 0.01,
                                          rng.standard_normal(4096, np.float32)]))
    k = num_classes

    def score(name, inputs):
        return (name, "Convolution", [rng.standard_normal((k, inputs, 1, 1), np.float32),
                                      rng.standard_normal(k, np.float32)])

    def up(name, size):
        return (name, "Deconvolution", [rng.standard_normal((k, k, size, size), np.float32)])

    layers.append(score("score_fr", 4096))
    if arch == "fcn32s":
        layers.append(up("upscore", 64))
    elif arch == "fcn16s":
        layers += [up("upscore2", 4), score("score_pool4", 512), up("upscore16", 32)]
    else:
        layers += [up("upscore2", 4), score("score_pool4", 512), up("upscore_pool4", 4),
                   score("score_pool3", 256), up("upscore8", 16)]
    return layers
