"""A reader for Caffe's ``NetParameter`` files (``.caffemodel``) without Caffe or protobuf.

A ``.caffemodel`` is one serialised ``caffe.NetParameter`` message
(``src/caffe/proto/caffe.proto``). This module decodes the protobuf wire format
directly and keeps only what weight conversion needs, so no compiled
``caffe_pb2`` and no protobuf runtime is involved:

    NetParameter      name = 1, layer = 100 (LayerParameter), layers = 2 (V1LayerParameter)
    LayerParameter    name = 1, type = 2 (string), bottom = 3, top = 4, blobs = 7
    V1LayerParameter  bottom = 2, top = 3, name = 4, type = 5 (enum LayerType), blobs = 6,
                      layer = 1 (V0LayerParameter: name = 1, type = 2, blobs = 50)
    BlobProto         shape = 7 (BlobShape: dim = 1, int64), data = 5 (float),
                      double_data = 8 (double), num/channels/height/width = 1..4
                      (the deprecated 4-D shape)

Repeated numbers are read packed or unpacked (protobuf parsers accept both).
Every other field is skipped by its wire type. Blobs come back as float32
numpy arrays in Caffe's own layout (convolution ``(O, I, kh, kw)``,
deconvolution ``(I, O, kh, kw)``, inner product ``(O, I)``).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

__all__ = ["CaffeLayer", "read_caffemodel", "parse_net_parameter", "V1_LAYER_TYPES"]

# V1LayerParameter.LayerType (caffe.proto) -> the type strings of LayerParameter.
V1_LAYER_TYPES = {
    0: "None", 35: "AbsVal", 1: "Accuracy", 30: "ArgMax", 2: "BNLL", 3: "Concat",
    37: "ContrastiveLoss", 4: "Convolution", 5: "Data", 39: "Deconvolution", 6: "Dropout",
    32: "DummyData", 7: "EuclideanLoss", 25: "Eltwise", 38: "Exp", 8: "Flatten",
    9: "HDF5Data", 10: "HDF5Output", 28: "HingeLoss", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 29: "MemoryData",
    16: "MultinomialLogisticLoss", 34: "MVN", 17: "Pooling", 26: "Power", 18: "ReLU",
    19: "Sigmoid", 27: "SigmoidCrossEntropyLoss", 36: "Silence", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 33: "Slice", 23: "TanH", 24: "WindowData",
    31: "Threshold",
}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a net: its name, type string, bottoms/tops and weight blobs.

    Attributes:
        name: the layer name (``conv1_1``, ``score_fr``, ...).
        type: the type string (``"Convolution"``); V1 enums are mapped to it.
        bottom, top: blob names.
        blobs: list of float32 arrays in Caffe's layout (weights, then bias).
        field: ``"layer"`` or ``"layers"`` (V1), where the layer was found.
    """

    name: str
    type: str
    bottom: list
    top: list
    blobs: list
    field: str


class _WireError(ValueError):
    pass


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _WireError("varint longer than 10 bytes")


def _fields(buf):
    """Yields (field number, wire type, value) of one message; value is an int or bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _FIXED64:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _FIXED32:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == _BYTES:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        else:  # groups (3, 4) do not occur in caffe.proto
            raise _WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise _WireError("truncated field")
        yield number, wire, value


def _signed64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(wire, value, out):
    if wire == _VARINT:
        out.append(_signed64(value))
        return
    pos = 0
    while pos < len(value):
        item, pos = _varint(value, pos)
        out.append(_signed64(item))


def _reals(wire, value, dtype, chunks):
    """Appends a packed (length-delimited) or unpacked (one fixed-width value) run of reals."""
    if wire not in (_BYTES, _FIXED32 if dtype == "<f4" else _FIXED64):
        raise _WireError(f"blob data with wire type {wire}")
    chunks.append(np.frombuffer(value, dtype=dtype))


def _blob(buf):
    dims, legacy = [], {}
    floats, doubles = [], []
    for number, wire, value in _fields(buf):
        if number == 7 and wire == _BYTES:  # BlobShape
            for n, w, v in _fields(value):
                if n == 1:
                    _packed_varints(w, v, dims)
        elif number == 5:
            _reals(wire, value, "<f4", floats)
        elif number == 8:
            _reals(wire, value, "<f8", doubles)
        elif number in (1, 2, 3, 4) and wire == _VARINT:
            legacy[number] = _signed64(value)
    chunks = floats or doubles or [np.zeros((0,), "<f4")]
    data = (np.concatenate(chunks) if len(chunks) > 1 else chunks[0]).astype(np.float32)
    if not dims:
        # The deprecated 4-D (num, channels, height, width): an inner-product weight is
        # (1, 1, O, I) and a bias (1, 1, 1, O); drop the leading ones as Caffe's reshape does.
        dims = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
        while len(dims) > 1 and dims[0] == 1:
            dims = dims[1:]
    if int(np.prod(dims)) != data.size:
        raise _WireError(f"blob shape {dims} does not hold its {data.size} values")
    return data.reshape(dims)


def _string(value):
    return bytes(value).decode("utf-8", errors="replace")


def _layer(buf, field):
    """A LayerParameter (field "layer") or V1LayerParameter (field "layers")."""
    names = {"layer": (1, 2, 3, 4, 7), "layers": (4, 5, 2, 3, 6)}[field]
    name_f, type_f, bottom_f, top_f, blobs_f = names
    name, type_, bottom, top, blobs = "", "", [], [], []
    v0 = None
    for number, wire, value in _fields(buf):
        if number == name_f and wire == _BYTES:
            name = _string(value)
        elif number == type_f:
            if field == "layer" and wire == _BYTES:
                type_ = _string(value)
            elif field == "layers" and wire == _VARINT:
                type_ = V1_LAYER_TYPES.get(value, f"V1Type{value}")
        elif number == bottom_f and wire == _BYTES:
            bottom.append(_string(value))
        elif number == top_f and wire == _BYTES:
            top.append(_string(value))
        elif number == blobs_f and wire == _BYTES:
            blobs.append(_blob(value))
        elif field == "layers" and number == 1 and wire == _BYTES:
            v0 = value
    if v0 is not None:  # V0LayerParameter inside a V1 layer (pre-2014 files)
        for number, wire, value in _fields(v0):
            if number == 1 and wire == _BYTES and not name:
                name = _string(value)
            elif number == 2 and wire == _BYTES and not type_:
                type_ = _string(value)
            elif number == 50 and wire == _BYTES:
                blobs.append(_blob(value))
    return CaffeLayer(name, type_, bottom, top, blobs, field)


def parse_net_parameter(data: bytes) -> tuple[str, list]:
    """Decodes a serialised NetParameter: returns (net name, [CaffeLayer, ...]) in file order.

    Both the ``layer`` (field 100) and the V1 ``layers`` (field 2) lists are read.
    Raises ValueError when the bytes are not a NetParameter.
    """
    name, layers = "", []
    for number, wire, value in _fields(memoryview(data)):
        if number == 1 and wire == _BYTES:
            name = _string(value)
        elif number == 100 and wire == _BYTES:
            layers.append(_layer(value, "layer"))
        elif number == 2 and wire == _BYTES:
            layers.append(_layer(value, "layers"))
    return name, layers


def read_caffemodel(path) -> tuple[str, list]:
    """Reads a ``.caffemodel`` file; returns (net name, layers), see `parse_net_parameter`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a Caffe NetParameter (names the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Caffe weights {path!r} do not exist; expected a .caffemodel file")
    with open(path, "rb") as f:
        data = f.read()
    try:
        name, layers = parse_net_parameter(data)
    except _WireError as error:
        raise ValueError(
            f"{path!r} is not a Caffe NetParameter (.caffemodel): {error}"
        ) from None
    if not layers:
        raise ValueError(
            f"{path!r} holds no Caffe layers; expected a .caffemodel written by Caffe "
            "(a NetParameter with `layer` or `layers` entries)"
        )
    return name, layers
