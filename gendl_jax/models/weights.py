"""PyTorch weights without torch: checkpoint files (``torch.save``, safetensors, ``.npz``) read with numpy, and
torch-layout state dicts mapped to and from Flax variables.

:func:`read_state_dict` picks the reader by the file's suffix:

=======================================  ==================================================================
suffix                                   reader
=======================================  ==================================================================
``.npz``                                 ``numpy.load`` (no pickles)
``.safetensors``                         :func:`read_safetensors`: 8-byte little-endian header length, a JSON
                                         header of name -> dtype, shape, byte offsets, then the raw buffer
``.pth``, ``.pt``, ``.bin``, ``.ckpt``   :func:`read_torch`: a file written by ``torch.save``
=======================================  ==================================================================

``torch.save`` writes one of two formats, both read here:

* the zip format (torch >= 1.6, the default): a zip archive with one top folder holding ``data.pkl`` (the
  pickled object), one member ``data/<key>`` per storage (its raw bytes), ``byteorder`` (``little`` or
  ``big``; little when absent) and ``version``. In the pickle a tensor is
  ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks)`` and a
  storage is a persistent id ``('storage', storage_type, key, location, numel)``.
* the legacy format (``_use_new_zipfile_serialization=False``, and every file from torch < 1.6, such as
  pytorch-fid's Inception weights): consecutive pickles in one stream, the magic number
  ``0x1950a86a20f9469cfc6c``, the protocol version 1001, a sys-info dict, the object itself (persistent
  ids ``('storage', storage_type, root_key, location, numel, view_metadata)``), the list of storage keys,
  then for each key in that order the storage's element count (8-byte little-endian) and its raw
  little-endian bytes.

The pickles are read by a restricted unpickler: the only globals it resolves are ``collections.OrderedDict``,
torch's tensor and parameter rebuild functions, its typed storage classes and the dtypes of
``_rebuild_tensor_v3``; those resolve to this module's stand-ins, never to torch. Any other global
(``os.system``, ``builtins.eval``, a numpy array, a pickled ``nn.Module``) is refused with a ``ValueError``
before anything is called, so a malicious file executes nothing.

A Flax module whose submodule names mirror torch's (``layer1/0/conv1`` for ``layer1.0.conv1``,
as :mod:`gendl_jax.models.resnet` and :mod:`gendl_jax.models.classic` do) maps leaf by leaf:

====================  =========================  ===========================================
Flax leaf             torch key suffix           layout
====================  =========================  ===========================================
params .../kernel     ``.weight`` (4-D conv)     OIHW -> HWIO
params .../kernel     ``.weight`` (2-D linear)   (out, in) -> (in, out)
params .../scale      ``.weight`` (BatchNorm)    same
params .../bias       ``.bias``                  same
batch_stats .../mean  ``.running_mean``          same
batch_stats .../var   ``.running_var``           same
====================  =========================  ===========================================

``num_batches_tracked`` entries are accepted and ignored. :func:`load_state_dict` reads a file and maps it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import mmap
import pathlib
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax.core import unfreeze

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
STATE_DICT_SUFFIXES = (".npz", ".safetensors", *TORCH_SUFFIXES)

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

# Typed storage classes (``torch.<Name>Storage``) -> element dtype; UntypedStorage holds bytes.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}
# Dtypes torch pickles by name (``torch.uint16``) for tensors without a typed storage class (_rebuild_tensor_v3).
_V3_DTYPES = {
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
}

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


class _FormatError(ValueError):
    """What is wrong with a torch file; :func:`read_torch_object` prefixes the file's path."""


class _Refused(_FormatError):
    """A pickle references a global that is not allowed."""


class _Frozen:
    """Base of the unpickler's stand-ins: a pickle's BUILD opcode cannot change them."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _FormatError(f"the pickle sets the state of {self!r}, which a torch state dict never does")


class _StorageType(_Frozen):
    """Stand-in for ``torch.<Name>Storage``."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self):
        return f"torch.{self.name}"


class _DType(_Frozen):
    """Stand-in for a ``torch.<dtype>`` object."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage(_Frozen):
    """One storage: ``numel`` elements of ``dtype``; ``raw`` (uint8 bytes) is attached once the file's data is read.

    A legacy view storage has a ``root`` and starts ``byte_offset`` bytes into it.
    """

    __slots__ = ("byte_offset", "dtype", "key", "numel", "raw", "root")
    __hash__ = None

    def __init__(self, key: str, dtype: np.dtype, numel: int, root: _Storage | None = None, byte_offset: int = 0):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.root, self.byte_offset, self.raw = root, byte_offset, None

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def __repr__(self):
        return f"storage {self.key!r}"


class _Tensor(_Frozen):
    """A tensor as the pickle describes it: a storage, an element offset, a size and a stride (in elements)."""

    __slots__ = ("dtype", "offset", "size", "storage", "stride")
    __hash__ = None

    def __init__(self, storage, offset, size, stride, dtype):
        if not isinstance(storage, _Storage):
            raise _FormatError(f"a tensor is rebuilt from {type(storage).__name__}, not from a storage")
        size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise _FormatError(f"a tensor has storage offset {offset!r}, not an int >= 0")
        if len(size) != len(stride) or min(size + stride, default=0) < 0:
            raise _FormatError(f"a tensor has size {size} and stride {stride}: same length, entries >= 0 expected")
        self.storage, self.offset, self.size, self.stride, self.dtype = storage, offset, size, stride, np.dtype(dtype)

    def __repr__(self):
        return f"tensor of size {self.size}"


class _Callable(_Frozen):
    """An allowed global that the pickle may call (REDUCE); wrapped so that BUILD cannot touch the function."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn):
        self.name, self.fn = name, fn

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return self.name


def _int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _FormatError(f"a tensor's {what} is {value!r}, not a tuple of ints")
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, size, stride, getattr(storage, "dtype", np.uint8))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if metadata:
        raise _FormatError(f"a tensor carries metadata {metadata!r} (conjugate or negative bit), not supported")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _DType):
        raise _FormatError(f"_rebuild_tensor_v3 got dtype {dtype!r}, not a torch dtype")
    if metadata:
        raise _FormatError(f"a tensor carries metadata {metadata!r} (conjugate or negative bit), not supported")
    return _Tensor(storage, storage_offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    if not isinstance(data, _Tensor):
        raise _FormatError(f"a parameter wraps {type(data).__name__}, not a tensor")
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): _Callable("collections.OrderedDict", collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor"): _Callable("torch._utils._rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Callable("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): _Callable("torch._utils._rebuild_tensor_v3", _rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): _Callable("torch._utils._rebuild_parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Callable(
        "torch._utils._rebuild_parameter_with_state", _rebuild_parameter
    ),
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", np.uint8),
    **{("torch", name): _DType(name, dtype) for name, dtype in _V3_DTYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals of ``_GLOBALS`` (to stand-ins) and torch's storage persistent ids.

    Args:
      file: the pickle stream.
      legacy: whether persistent ids are the legacy format's 6-tuples (else the zip format's 5-tuples).
      storages: key -> storage, filled as the pickle references them.
      views: (legacy) view key -> view storage, filled likewise.
    """

    def __init__(self, file, *, legacy: bool, storages: dict[str, _Storage], views: dict[str, _Storage] | None = None):
        super().__init__(file, encoding="utf-8")
        self.legacy, self.storages, self.views = legacy, storages, views if views is not None else {}

    def find_class(self, module, name):
        found = _GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(name, str) else None
        if found is None:
            what = f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else f"{module!r}, {name!r}"
            hint = ""
            if module == "torch" and isinstance(name, str) and name.endswith("Storage"):
                hint = f" (tensors of {name} are not supported)"
            raise _Refused(
                f"refused to load the global {what}{hint}: only tensors, storages and dicts are read, so nothing in "
                "the file is executed (a file saved with torch.save(model.state_dict()) holds nothing else)"
            )
        return found

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise _FormatError(f"unexpected persistent id {pid!r}")
        typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if typename == "module":
            raise _FormatError("the file holds a pickled nn.Module; save its state_dict() with torch.save instead")
        if typename != "storage" or len(pid) != (6 if self.legacy else 5):
            raise _FormatError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise _FormatError(f"a storage of type {storage_type!r}, not a torch storage class")
        key = key.decode("ascii") if isinstance(key, bytes) else key
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise _FormatError(f"a storage has key {key!r} and element count {numel!r}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise _FormatError(f"storage {key!r} is referenced with two dtypes or sizes")
        view = pid[5] if self.legacy else None
        if view is None:
            return storage
        # Legacy storage views (torch < 1.0): (view_key, element offset, element count) into the root storage.
        if not isinstance(view, tuple) or len(view) != 3 or not all(isinstance(v, (int, str, bytes)) for v in view):
            raise _FormatError(f"a storage view has metadata {view!r}")
        view_key, offset, count = view
        view_key = view_key.decode("ascii") if isinstance(view_key, bytes) else view_key
        if not isinstance(offset, int) or not isinstance(count, int) or offset < 0 or count < 0:
            raise _FormatError(f"a storage view has metadata {view!r}")
        if offset + count > numel:
            raise _FormatError(f"storage view {view_key!r} ends at element {offset + count}, past its root's {numel}")
        if view_key not in self.views:
            byte_offset = offset * storage.dtype.itemsize
            self.views[view_key] = _Storage(view_key, storage.dtype, count, root=storage, byte_offset=byte_offset)
        return self.views[view_key]


class _Reader:
    """A read-only file over ``bytes`` or an ``mmap``, for pickles: a read never allocates more than the buffer holds."""

    def __init__(self, buffer: bytes | mmap.mmap, pos: int = 0):
        self.buffer, self.pos = buffer, pos

    def read(self, n: int = -1) -> bytes:
        end = len(self.buffer) if n is None or n < 0 else min(self.pos + n, len(self.buffer))
        out = self.buffer[self.pos : end]
        self.pos = end
        return out

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        newline = self.buffer.find(b"\n", self.pos)
        return self.read(-1 if newline < 0 else newline + 1 - self.pos)


def _materialize(tensor: _Tensor, big_endian: bool) -> np.ndarray:
    """A C-contiguous copy of the tensor's elements (storage offset, size and stride honoured)."""
    dtype, raw = tensor.dtype, tensor.storage.raw
    if raw.size % dtype.itemsize:
        raise _FormatError(f"{tensor.storage!r} holds {raw.size} bytes, not a whole number of {dtype} elements")
    if math.prod(tensor.size) == 0:
        return np.zeros(tensor.size, dtype)
    # Strided copy on unsigned ints of the element's width (as_strided does not take ml_dtypes' float8).
    bits = raw.view(f"u{dtype.itemsize}")
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
    if last >= bits.size:
        raise _FormatError(
            f"a tensor of size {tensor.size}, stride {tensor.stride} at offset {tensor.offset} reaches element "
            f"{last} of {tensor.storage!r}, which holds {bits.size}"
        )
    view = np.lib.stride_tricks.as_strided(
        bits[tensor.offset :], tensor.size, [s * dtype.itemsize for s in tensor.stride], writeable=False
    )
    out = np.array(view, order="C", copy=True)
    if big_endian and dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return out.view(dtype)


def _convert(obj, big_endian: bool):
    """The unpickled object with tensors (and bare storages) replaced by numpy arrays."""
    if isinstance(obj, _Tensor):
        return _materialize(obj, big_endian)
    if isinstance(obj, _Storage):
        return _materialize(_Tensor(obj, 0, (obj.numel,), (1,), obj.dtype), big_endian)
    if isinstance(obj, dict):
        out = type(obj)()
        for key, value in obj.items():
            out[key] = _convert(value, big_endian)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_convert(v, big_endian) for v in obj)
    if isinstance(obj, _Frozen):
        raise _FormatError(f"the object holds {obj!r} outside a tensor")
    return obj


def _storage_bytes(buffer: mmap.mmap, start: int, nbytes: int) -> np.ndarray:
    if start + nbytes > len(buffer):
        raise _FormatError(f"truncated: {nbytes} bytes of storage data at byte {start}, past the end ({len(buffer)})")
    return np.frombuffer(buffer, np.uint8, nbytes, start)


def _read_zip(file, buffer: mmap.mmap) -> tuple[Any, bool]:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as e:
        raise _FormatError(f"a zip archive that is truncated or corrupt ({e})") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if any(n == "constants.pkl" or (n.endswith("/constants.pkl") and n.count("/") == 1) for n in names):
            raise _FormatError("a TorchScript archive (torch.jit.save); save the model's state_dict() with torch.save")
        if len(pickles) != 1:
            raise _FormatError(
                f"a zip archive with {len(pickles)} top-level data.pkl, not a file written by torch.save"
            )
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(prefix + "byteorder").strip() if prefix + "byteorder" in names else b"little"
        if byteorder not in (b"little", b"big"):
            raise _FormatError(f"byteorder record {byteorder!r}, expected 'little' or 'big'")
        storages: dict[str, _Storage] = {}
        obj = _Unpickler(_Reader(archive.read(pickles[0])), legacy=False, storages=storages).load()
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise _FormatError(f"the storage data {name!r} is missing") from None
            if info.file_size != storage.nbytes:
                raise _FormatError(f"{name!r} holds {info.file_size} bytes, its storage needs {storage.nbytes}")
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                storage.raw = np.frombuffer(archive.read(name), np.uint8)
                continue
            # Stored member (what torch writes): read the bytes in place, after the local header.
            header = buffer[info.header_offset : info.header_offset + 30]
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise _FormatError(f"the zip entry of {name!r} is corrupt")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            storage.raw = _storage_bytes(buffer, info.header_offset + 30 + name_len + extra_len, storage.nbytes)
    return obj, byteorder == b"big"


def _read_legacy(buffer: mmap.mmap) -> tuple[Any, bool]:
    reader = _Reader(buffer)
    storages: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def load():
        return _Unpickler(reader, legacy=True, storages=storages, views=views).load()

    try:
        magic = load()
    except _Refused:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise _FormatError(
            "not a torch file: neither a zip archive (torch >= 1.6) nor a legacy torch pickle stream "
            f"({type(e).__name__} on the first pickle)"
        ) from None
    if magic != _MAGIC_NUMBER:
        raise _FormatError("not a torch file: neither a zip archive nor a legacy stream (no torch magic number)")
    if (version := load()) != _PROTOCOL_VERSION:
        raise _FormatError(f"legacy torch protocol version {version!r}, expected {_PROTOCOL_VERSION}")
    if not isinstance(load(), dict):
        raise _FormatError("the legacy sys-info record is not a dict")
    obj = load()
    keys = load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _FormatError(f"the legacy storage-key list is {type(keys).__name__}, not a list of str")
    pos = reader.pos
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise _FormatError(f"storage key {key!r} is listed but no tensor uses it")
        if storage.raw is not None:
            raise _FormatError(f"storage key {key!r} is listed twice")
        count = int.from_bytes(_storage_bytes(buffer, pos, 8).tobytes(), "little")
        if count != storage.numel:
            raise _FormatError(f"storage {key!r} has {count} elements in the data, {storage.numel} in the pickle")
        storage.raw = _storage_bytes(buffer, pos + 8, storage.nbytes)
        pos += 8 + storage.nbytes
    missing = sorted(k for k, s in storages.items() if s.raw is None)
    if missing:
        raise _FormatError(f"the data of storages {missing} is missing")
    for view in views.values():
        view.raw = view.root.raw[view.byte_offset : view.byte_offset + view.nbytes]
    return obj, False


def _read(path: pathlib.Path) -> Any:
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        if size == 0:
            raise _FormatError("the file is empty")
        buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        obj = None
        try:
            if buffer[:4] == b"PK\x03\x04":
                obj, big_endian = _read_zip(file, buffer)
            elif buffer[257:262] == b"ustar":
                raise _FormatError(
                    "the tar-based format of torch < 0.4 is not supported; load it with an old torch and re-save it "
                    "with torch.save"
                )
            else:
                obj, big_endian = _read_legacy(buffer)
            return _convert(obj, big_endian)
        finally:
            obj = None  # the storages' views into the mmap (the arrays returned are copies)
            # Views still held by a traceback raise BufferError: the mmap then closes when they are collected.
            with contextlib.suppress(BufferError):
                buffer.close()


def read_torch_object(path: str | pathlib.Path) -> Any:
    """The object a ``torch.save`` file holds, with its tensors as numpy arrays, read without torch.

    Both formats of ``torch.save`` are read (the zip archive of torch >= 1.6 and the legacy pickle stream;
    see the module's docstring). Each tensor becomes a C-contiguous numpy array that owns its memory (views,
    offsets and shared storages resolved; big-endian files byteswapped); dtypes float64/32/16, bfloat16
    (``ml_dtypes``), int64/32/16/8, uint8, bool, and uint16/32/64 and float8 (``ml_dtypes``). Dicts,
    ``OrderedDict``, lists, tuples, numbers, strings and None are kept as they are.

    Args:
      path: a file written by ``torch.save``.
    Returns:
      the saved object (usually a dict of str -> np.ndarray).
    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: (one line, naming the file) the pickle references a global other than the tensor,
        storage and ``OrderedDict`` ones (refused before anything runs); the file is empty, truncated, not a
        torch file, a TorchScript archive, or the tar format of torch < 0.4; a tensor of an unsupported dtype.
    """
    path = pathlib.Path(path)
    try:
        return _read(path)
    except _FormatError as e:
        raise ValueError(f"{path}: {_one_line(e)}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        zipfile.BadZipFile,
        struct.error,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        OverflowError,
        UnicodeDecodeError,
        RecursionError,
        MemoryError,
        RuntimeError,  # zipfile: an encrypted member, an unknown compression
        ValueError,
    ) as e:
        raise ValueError(f"{path}: truncated or corrupt torch file ({type(e).__name__}: {_one_line(e)})") from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _flatten(obj: Mapping, prefix: str, out: dict[str, np.ndarray], path: pathlib.Path) -> None:
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r} under {prefix or 'the top level'!r} is not a str")
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            _flatten(value, name, out, path)
            continue
        if isinstance(value, np.ndarray):
            array = value
        elif isinstance(value, (bool, int, float)):
            array = np.asarray(value)
        else:
            raise ValueError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor, int or float "
                "(read_torch reads state dicts; read_torch_object returns the whole object)"
            )
        if name in out:
            raise ValueError(f"{path}: two entries flatten to the key {name!r}")
        out[name] = array


def read_torch(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict (a ``torch.save`` file, either format) as name -> numpy array, without torch.

    Nested dicts are flattened to dotted keys (``{"encoder": {"fc.weight": w}}`` -> ``"encoder.fc.weight"``);
    a top-level ``{"state_dict": {...}}`` wrapper (training checkpoints) is unwrapped, its sibling entries
    (epoch, optimizer state) left out. Int and float entries become 0-d arrays. Entries such as
    ``num_batches_tracked`` (int64) are kept.

    Args:
      path: a file written by ``torch.save``, e.g. pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``.
    Returns:
      dict of str -> np.ndarray (C-contiguous copies), in the file's order.
    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: everything :func:`read_torch_object` refuses; an object that is not a dict; an entry that
        is not a tensor, int or float (a string, a list, None); a non-str key.
    """
    path = pathlib.Path(path)
    obj = read_torch_object(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out, path)
    return out


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as numpy arrays.

    Args:
      path: the file (8-byte little-endian header length, JSON header, raw little-endian buffer).
    Returns:
      dict of name -> np.ndarray (copies; the ``__metadata__`` entry is skipped).
    Raises:
      ValueError: a header longer than the file, an unsupported dtype, offsets inconsistent with a shape.
    """
    data = pathlib.Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError(f"{path}: header length {header_len} exceeds the file size {len(data)}")
    header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    buffer = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - begin != dtype.itemsize * int(np.prod(shape, dtype=np.int64)) or end > len(buffer):
            raise ValueError(f"{path}: tensor {name!r} has offsets {begin}..{end} inconsistent with shape {shape}")
        tensors[name] = np.frombuffer(buffer[begin:end], dtype=dtype.newbyteorder("<")).reshape(shape).copy()
    return tensors


def write_safetensors(path: str | pathlib.Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes name -> array as a ``.safetensors`` file.

    Args:
      path: the file to write.
      tensors: name -> array of a dtype safetensors stores (float64/32/16, bfloat16, int64/32/16/8, uint8, bool).
    Raises:
      ValueError: an array of another dtype.
    """
    names = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(np.asarray(tensors[name]))
        if arr.dtype not in names:
            raise ValueError(f"tensor {name!r} has dtype {arr.dtype}, not storable in safetensors")
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": names[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    pathlib.Path(path).write_bytes(len(text).to_bytes(8, "little") + text + b"".join(chunks))


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """A state dict (name -> array) from a weight file, the reader chosen by the file's suffix.

    Args:
      path: ``.npz`` (``numpy.savez`` of the state dict), ``.safetensors``, or a ``torch.save`` file
        ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` (read by :func:`read_torch`, without torch).
    Returns:
      dict of str -> np.ndarray.
    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: another suffix (the message lists the accepted ones), or what the reader refuses.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state-dict file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix in TORCH_SUFFIXES:
        return read_torch(path)
    raise ValueError(f"path must end in one of {', '.join(STATE_DICT_SUFFIXES)}, got {path.name!r}")


IGNORED_SUFFIXES = ("num_batches_tracked",)

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


class StateDictMismatch(ValueError):
    """A state dict does not fit the model; the message lists the missing, unexpected and wrong-shape keys."""


def _torch_layout(key: str, leaf_name: str, value: np.ndarray) -> np.ndarray:
    """Flax array -> torch layout."""
    if leaf_name == "kernel" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if leaf_name == "kernel" and value.ndim == 2:
        return value.T
    if leaf_name == "kernel":
        raise ValueError(f"cannot map kernel {key!r} of rank {value.ndim} (only 2-D linear and 4-D conv)")
    return value


def _flax_layout(leaf_name: str, value: np.ndarray) -> np.ndarray:
    """torch array -> Flax layout."""
    if leaf_name == "kernel" and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if leaf_name == "kernel" and value.ndim == 2:
        return value.T
    return value


def torch_keys(variables: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The torch name of every "params" / "batch_stats" leaf of Flax variables.

    Args:
      variables: Flax variables (arrays or ``jax.ShapeDtypeStruct`` leaves).
    Returns:
      dict of torch key (``layer1.0.bn1.running_mean``) -> Flax path (collection, module, ..., leaf).
    Raises:
      ValueError: a leaf with no torch name (only kernel, scale, bias, mean and var have one).
    """
    keys = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(
        {c: variables[c] for c in ("params", "batch_stats") if c in variables}
    )[0]:
        names = tuple(p.key for p in path)
        leaf = names[-1]
        if leaf not in _LEAF_TO_TORCH:
            raise ValueError(f"no torch name for Flax leaf {'/'.join(names)!r}")
        keys[".".join(names[1:-1] + (_LEAF_TO_TORCH[leaf],))] = names
    return keys


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def to_state_dict(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax variables -> a torch-layout state dict (e.g. for ``np.savez`` or :func:`write_safetensors`).

    Args:
      variables: Flax variables with "params" (and "batch_stats").
    Returns:
      dict of torch key -> C-contiguous numpy array in torch's layout (conv OIHW, linear (out, in)).
    Raises:
      ValueError: a leaf with no torch name, or a kernel that is neither 2-D nor 4-D.
    """
    out = {}
    for key, path in torch_keys(variables).items():
        value = variables
        for p in path:
            value = value[p]
        out[key] = np.ascontiguousarray(_torch_layout(key, path[-1], np.asarray(value)))
    return out


def from_state_dict(state_dict: Mapping[str, Any], like: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> dict:
    """A torch-layout ``state_dict`` -> Flax variables shaped like ``like`` (its "params" and "batch_stats").

    Args:
      state_dict: torch key -> array (numpy, or anything ``np.asarray`` accepts).
      like: variables of the target model (``jax.eval_shape(model.init, ...)`` suffices without
        ``skip``; with ``skip``, real arrays, since the skipped leaves are copied from it).
      skip: torch-key prefixes to leave out on both sides (e.g. ``("fc",)`` to keep ``like``'s
        freshly initialised head when the class count differs); those leaves are taken from ``like``.
    Returns:
      a new variables dict (numpy float arrays in ``like``'s dtypes).
    Raises:
      StateDictMismatch: keys the model needs but the state dict lacks, keys the model does not
        have, and keys whose shape differs (all listed at once).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    expected = torch_keys(like)

    def skipped(key: str) -> bool:
        return any(key == s or key.startswith(s + ".") for s in skip)

    given = {k: v for k, v in state_dict.items() if not k.endswith(IGNORED_SUFFIXES) and not skipped(k)}
    wanted = {k: p for k, p in expected.items() if not skipped(k)}
    missing = sorted(set(wanted) - set(given))
    unexpected = sorted(set(given) - set(wanted))
    wrong, converted = [], {}
    for key in sorted(set(wanted) & set(given)):
        path = wanted[key]
        target = like
        for p in path:
            target = target[p]
        value = _flax_layout(path[-1], np.asarray(given[key]))
        if tuple(value.shape) != tuple(target.shape):
            torch_shape = tuple(np.shape(given[key]))
            want = tuple(_torch_layout(key, path[-1], np.empty(target.shape, np.int8)).shape)
            wrong.append(f"{key}: got {torch_shape}, expected {want}")
        else:
            converted[path] = value.astype(target.dtype)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): {wrong}")
        raise StateDictMismatch("state dict does not fit the model; " + "; ".join(parts))
    kept = [
        ".".join(p[1:]) for k, p in expected.items() if skipped(k) and isinstance(_get(like, p), jax.ShapeDtypeStruct)
    ]
    if kept:
        raise TypeError(
            f"like must hold arrays (not jax.eval_shape structs) for the skipped leaves {kept}: they are copied from it"
        )
    out = unfreeze(jax.tree_util.tree_map(lambda a: a, dict(like)))
    for path, value in converted.items():
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return out


def load_state_dict(path: str | pathlib.Path, like: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> dict:
    """:func:`read_state_dict` then :func:`from_state_dict` into variables shaped like ``like``.

    Args:
      path: ``.npz``, ``.safetensors``, or a ``torch.save`` file (``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``).
      like: variables of the target model (see :func:`from_state_dict`).
      skip: torch-key prefixes taken from ``like`` instead of the file.
    Returns:
      a new variables dict.
    Raises:
      FileNotFoundError, ValueError: see :func:`read_state_dict`; StateDictMismatch: see :func:`from_state_dict`.
    """
    return from_state_dict(read_state_dict(path), like, skip=skip)
