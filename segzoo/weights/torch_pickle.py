"""Reads PyTorch ``.pth`` state dicts without torch and without running the pickle.

Both of torch's serialisation formats are read:

- the zip archive (``torch.save`` since torch 1.6): ``PREFIX/data.pkl`` plus
  one raw little-endian file per storage, ``PREFIX/data/KEY``;
- the legacy stream (``_use_new_zipfile_serialization=False``, the 2019
  releases): five pickles/blocks in a row, the magic number
  0x1950a86a20f9469cfc6c, the protocol version 1001, a sys-info dict, the
  object itself, the list of storage keys, then per storage an int64 element
  count and the raw bytes.

The object pickle is decoded by `RestrictedUnpickler`, which resolves only the
globals a tensor state dict needs (as ``torch.load(weights_only=True)``):
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (and ``_v3``,
``_rebuild_parameter``), the ``torch.*Storage`` types and ``torch`` dtypes,
each mapped to a numpy stand-in. Any other global (``os.system``,
``builtins.eval``, a module class, ...) raises `UnsafePickleError` naming it,
before anything is called. Tensors come back as numpy arrays (bfloat16 as
float32, exactly), in torch's own layout (NCHW conv kernels ``(O, I, kh, kw)``).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage type name -> numpy dtype (bfloat16 is widened after reading).
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "UntypedStorage": "u1",
}
_TORCH_DTYPES = {
    "float64": "<f8", "double": "<f8", "float32": "<f4", "float": "<f4", "float16": "<f2",
    "half": "<f2", "bfloat16": "bfloat16", "int64": "<i8", "long": "<i8", "int32": "<i4",
    "int": "<i4", "int16": "<i2", "short": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
}


class UnsafePickleError(ValueError):
    """The pickle references an object a tensor state dict never needs."""


class _StorageType:
    """Stand-in for a ``torch.XStorage`` class: only its dtype is used."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


class _DType:
    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _Storage:
    """A storage's bytes, read lazily from the file: (dtype, numel, loader)."""

    def __init__(self, dtype, numel, loader):
        self.dtype, self.numel, self._loader, self._array = dtype, numel, loader, None

    def array(self):
        if self._array is None:
            raw = self._loader()
            if self.dtype == "bfloat16":  # bits of the upper half of a float32
                bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
                self._array = bits.view(np.float32)
            else:
                self._array = np.frombuffer(raw, self.dtype)
        return self._array


def _as_dtype(storage, dtype):
    """The storage's values as `dtype` (an untyped byte storage viewed as typed)."""
    values = storage.array()
    if dtype is None or storage.dtype == dtype:
        return values
    if storage.dtype != "u1":
        raise UnsafePickleError(f"tensor of {dtype} on a {storage.dtype} storage")
    if dtype == "bfloat16":
        return (np.frombuffer(values.tobytes(), "<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(values.tobytes(), dtype)


class _TensorRef:
    """A tensor record: its storage, offset, size and stride (values read later).

    The legacy format stores the bytes after the object pickle, so tensors are
    materialised only once the whole file is read (`materialize`).
    """

    def __init__(self, storage, storage_offset, size, stride, dtype=None):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError("a tensor whose storage is not a persistent storage record")
        self.storage, self.offset, self.dtype = storage, int(storage_offset), dtype
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def materialize(self):
        values = _as_dtype(self.storage, self.dtype)
        size, stride, offset = self.size, self.stride, self.offset
        if any(s == 0 for s in size):
            return np.zeros(size, values.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if offset < 0 or last >= values.size or (stride and min(stride) < 0):
            raise ValueError(f"tensor of size {size} / stride {stride} runs past its storage")
        if not size:
            return np.array(values[offset])
        view = np.lib.stride_tricks.as_strided(
            values[offset:], shape=size,
            strides=tuple(s * values.itemsize for s in stride), writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, dtype=None):
    return _TensorRef(storage, storage_offset, size, stride, dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise UnsafePickleError("_rebuild_tensor_v3 without a torch dtype")
    return _rebuild_tensor(storage, storage_offset, size, stride, dtype=dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _TensorRef):
        raise UnsafePickleError("a Parameter that does not wrap a tensor")
    return data


def _allowed_globals():
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(name, dtype)
    for name, dtype in _TORCH_DTYPES.items():
        allowed[("torch", name)] = _DType(name, dtype)
    return allowed


_ALLOWED = _allowed_globals()
_DTYPE_VALUES = frozenset(_STORAGE_DTYPES.values())


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a tensor state dict and nothing else.

    Args:
        file: binary file positioned at the object pickle.
        load_storage: callable (key, dtype, numel, record) -> bytes giving a
            storage's raw little-endian bytes; `record` is the persistent id tuple.
        source: the file name, for error messages.
    Only the globals listed in the module docstring resolve; `find_class`
    raises `UnsafePickleError` for any other, so no callable from the file is
    ever looked up, let alone run.
    """

    def __init__(self, file, load_storage, source="<pickle>"):
        super().__init__(file)
        self._load_storage = load_storage
        self._source = source
        self._storages = {}

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refused to load the global {module}.{name}; a weights file "
                "may hold only tensors (torch.save of a state_dict). It may be malicious or a "
                "whole pickled model: re-save it with torch.save(model.state_dict(), PATH)."
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise UnsafePickleError(
                f"{self._source}: persistent record {str(pid)[:80]!r} is not a tensor storage")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self._source}: storage of unknown type {storage_type!r}")
        if storage_type.dtype not in _DTYPE_VALUES:
            raise UnsafePickleError(f"{self._source}: storage of unknown dtype {storage_type!r}")
        if key not in self._storages:
            dtype = storage_type.dtype
            self._storages[key] = _Storage(
                dtype, numel, lambda k=key, d=dtype, n=numel, r=pid: self._load_storage(k, d, n, r))
        if len(pid) > 5 and pid[5] is not None:  # a storage view (torch < 1.0 files)
            raise ValueError(f"{self._source}: storage views (torch < 1.0 files) are not supported")
        return self._storages[key]


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pickles:
            raise ValueError(f"{path!r} is a zip file but not a torch archive (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() not in (b"little", b""):
            raise ValueError(f"{path!r}: big-endian torch archives are not supported")

        def load_storage(key, dtype, numel, record):
            name = f"{prefix}data/{key}"
            if name not in names:
                raise ValueError(f"{path!r}: storage {key} is missing from the archive")
            raw = archive.read(name)
            if len(raw) < numel * _itemsize(dtype):
                raise ValueError(f"{path!r}: storage {key} is truncated")
            return raw[: numel * _itemsize(dtype)]

        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), load_storage, path)
        return _plain(unpickler.load())  # read the storages before the archive closes


class _LegacyHeader(pickle.Unpickler):
    """The magic number / protocol / sys-info pickles: plain data only."""

    def find_class(self, module, name):
        raise UnsafePickleError(f"refused global {module}.{name} in a torch file header")


def _load_legacy(path):
    with open(path, "rb") as f:
        try:
            magic = _LegacyHeader(f).load()
            protocol = _LegacyHeader(f).load()
            _LegacyHeader(f).load()  # sys_info: endianness, type sizes
        except UnsafePickleError:
            raise
        except Exception as error:
            raise ValueError(
                f"{path!r} is neither a torch zip archive nor a legacy torch pickle: {error}"
            ) from None
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise ValueError(
                f"{path!r} is not a torch file (magic {magic!r}, protocol {protocol!r}); "
                "expected a .pth written by torch.save")
        def load_storage(key, dtype, numel, record):
            raise ValueError(f"{path!r}: storage {key} is not listed after the object")

        unpickler = RestrictedUnpickler(f, load_storage, path)
        result = unpickler.load()
        keys = _LegacyHeader(f).load()
        if not isinstance(keys, list):
            raise ValueError(f"{path!r}: malformed storage key list")
        data = {}
        for key in keys:
            key = str(key)
            if key not in unpickler._storages:
                raise ValueError(f"{path!r}: storage {key} has no tensor")
            storage = unpickler._storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise ValueError(f"{path!r}: storage {key} is truncated")
            (count,) = struct.unpack("<q", header)
            size = count * _itemsize(storage.dtype)
            raw = f.read(size)
            if len(raw) != size:
                raise ValueError(f"{path!r}: storage {key} is truncated")
            data[key] = raw
        for key, storage in unpickler._storages.items():
            storage._loader = lambda k=key: data[k]
        return _plain(result)


def load_state_dict(path) -> dict:
    """Reads a torch ``.pth``/``.pt`` file of tensors: returns ``{name: np.ndarray}``.

    Args:
        path: a file written by ``torch.save(state_dict, path)`` in either format.
    Returns:
        the pickled object with every tensor as a numpy array and OrderedDicts
        as dicts (a state dict: ``{"conv1.weight": float32 (64, 3, 7, 7), ...}``).
        A checkpoint that nests the state dict (``{"model": {...}}``) is returned as is.
    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError (a ValueError): the pickle references any global
            beyond tensors, storages and OrderedDict; nothing from it was run.
        ValueError: not a torch file, or a truncated one.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"torch weights {path!r} do not exist; expected a .pth file")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)


def _plain(value):
    """Materialises tensors; OrderedDicts become dicts, lists and tuples stay."""
    if isinstance(value, _TensorRef):
        return value.materialize()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value
