"""PyTorch-style state dicts (torchvision naming) to and from Flax variables, without torch.

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

``num_batches_tracked`` entries are accepted and ignored. Files: ``.npz`` (``numpy.savez`` of the
state dict) or ``.safetensors`` (read with numpy: 8-byte little-endian header length, a JSON header
of name -> dtype, shape, byte offsets, then the raw little-endian buffer).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax.core import unfreeze

IGNORED_SUFFIXES = ("num_batches_tracked",)

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}

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


class StateDictMismatch(ValueError):
    """Raised when a state dict does not fit the model; lists missing, unexpected and wrong-shape keys."""


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
    """torch key -> Flax path (collection, module, ..., leaf) for every "params" / "batch_stats" leaf."""
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
    """Flax variables -> torch-layout state dict of float numpy arrays (e.g. to ``np.savez``)."""
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


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file as numpy arrays (name -> array)."""
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
    """Writes name -> array as a ``.safetensors`` file (little-endian, offsets in sorted name order)."""
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
    """A state dict from ``.npz`` or ``.safetensors`` (chosen by the file's suffix)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state-dict file at {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    raise ValueError(f"path must end in .npz or .safetensors, got {path.name!r}")


def load_state_dict(path: str | pathlib.Path, like: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> dict:
    """:func:`read_state_dict` then :func:`from_state_dict` into variables shaped like ``like``."""
    return from_state_dict(read_state_dict(path), like, skip=skip)
