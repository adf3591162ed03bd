"""CIFAR-10 and CIFAR-100 from the "python version" files of their authors, never downloaded.

Where the files are: ``data_dir`` (else ``$GENDL_DATA_DIR``) or its ``cifar/`` sub-folder holds either the
extracted folder (``cifar-10-batches-py/``, ``cifar-100-python/``) or the tarball
(``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz``); the folder is read when both are there. The tarball is
read in place with :mod:`tarfile` (nothing is extracted to disk).

Each batch is a pickled dict with bytes keys: ``b"data"``, a (N, 3072) uint8 array whose rows hold the 1024 red,
then green, then blue values of a 32x32 image in row-major order, and ``b"labels"`` (CIFAR-10) or
``b"fine_labels"`` and ``b"coarse_labels"`` (CIFAR-100), lists of N ints. They are unpickled by
:class:`RestrictedUnpickler`, which builds only numpy arrays and dtypes (what the batches hold) and refuses every
other global, so a tampered file cannot run code.

Checksums: with ``verify_checksums=True`` (the default) the tarball's MD5, or each extracted file's, must be the
published one (:data:`CIFAR_ARCHIVES`, :data:`CIFAR_FILES`: the values torchvision checks).
"""

from __future__ import annotations

import functools
import hashlib
import io
import pathlib
import pickle
import tarfile
from typing import ClassVar

import numpy as np

from gendl_jax.data.mnist import resolve_data_dir

__all__ = [
    "CIFAR_ARCHIVES",
    "CIFAR_FILES",
    "CIFAR_FOLDERS",
    "CIFAR_NAMES",
    "CIFAR_NUM_CLASSES",
    "CIFAR_SIZES",
    "RefusedGlobalError",
    "RestrictedUnpickler",
    "find_cifar",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "read_cifar_batch",
]

CIFAR_NAMES: tuple[str, ...] = ("cifar10", "cifar100")
CIFAR_ARCHIVES: dict[str, tuple[str, str]] = {
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}
"""Name -> (tarball, its MD5)."""
CIFAR_FOLDERS: dict[str, str] = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
"""Name -> the folder the tarball extracts to (also the prefix of its members)."""
CIFAR_FILES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "cifar10": {
        "train": (
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ),
        "test": (("test_batch", "40351d587109b95175f43aff81a1287e"),),
    },
    "cifar100": {
        "train": (("train", "16019d7e3df5f24257cddd939b257f8d"),),
        "test": (("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
    },
}
"""Name -> split -> the batch files of the split in order, each (file name, MD5)."""
CIFAR_SIZES: dict[str, int] = {"train": 50000, "test": 10000}
"""Examples per split (the same for both datasets; guaranteed by the checksums, not checked without them)."""
CIFAR_NUM_CLASSES: dict[str, int] = {"cifar10": 10, "fine": 100, "coarse": 20}

_LABEL_KEYS = {"cifar10": b"labels", "fine": b"fine_labels", "coarse": b"coarse_labels"}
_CHUNK = 1 << 20
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's ndarray reconstructor, reached without a private name


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle asked for something :class:`RestrictedUnpickler` does not build."""


def _reconstruct_ndarray(cls, shape, typecode):
    if cls is not np.ndarray:
        raise RefusedGlobalError(f"refused to build an array of class {cls!r}")
    return _RECONSTRUCT(cls, shape, typecode)


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise RefusedGlobalError(f"refused the object dtype {dtype}")
    return dtype


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR batch holds: numpy arrays and (non-object) dtypes, besides
    the plain values pickle makes without globals (dicts, lists, bytes, ints, ...).

    The globals allowed are ``numpy.core.multiarray._reconstruct`` (what the published files name; also under
    numpy 2's ``numpy._core``), ``numpy.ndarray`` and ``numpy.dtype``; any other raises
    :class:`RefusedGlobalError` (a ``pickle.UnpicklingError``) naming it, as do an array of another class and an
    object dtype. Use ``encoding="bytes"`` for the Python 2 files (keys stay bytes).
    """

    _ALLOWED: ClassVar[dict] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct_ndarray,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refused the global {module}.{name}: a CIFAR batch holds only numpy arrays, dicts, lists and bytes"
            ) from None


def _md5(data: bytes | None = None, path: pathlib.Path | None = None) -> str:
    h = hashlib.md5(usedforsecurity=False)
    if data is not None:
        h.update(data)
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
    return h.hexdigest()


def _check_md5(where: str, expected: str, found: str) -> None:
    if found != expected:
        raise ValueError(
            f"MD5 mismatch for {where}: expected {expected} (the published checksum), found {found}; "
            "the file is corrupt or another version (verify_checksums=False skips the check)"
        )


def _check_name(name) -> str:
    if name not in CIFAR_NAMES:
        raise ValueError(f"name must be one of {CIFAR_NAMES}, got {name!r}")
    return name


def _check_split(split) -> str:
    if split not in CIFAR_SIZES:
        raise ValueError(f"split for CIFAR must be one of {tuple(CIFAR_SIZES)}, got {split!r}")
    return split


def find_cifar(name: str, data_dir=None) -> pathlib.Path:
    """The extracted folder or the tarball of ``name`` ("cifar10" or "cifar100").

    Looks in the data directory (``data_dir``, else ``$GENDL_DATA_DIR``) and its ``cifar/`` sub-folder, in this
    order, for the folder :data:`CIFAR_FOLDERS` first, then the tarball :data:`CIFAR_ARCHIVES`.

    Raises:
      FileNotFoundError: no data directory, or neither is there (names every path looked for; never downloads).
    """
    name = _check_name(name)
    root = resolve_data_dir(data_dir)
    candidates = []
    for d in (root, root / "cifar"):
        candidates += [d / CIFAR_FOLDERS[name], d / CIFAR_ARCHIVES[name][0]]
    for path in candidates:
        if path.is_dir() if path.name == CIFAR_FOLDERS[name] else path.is_file():
            return path
    raise FileNotFoundError(
        f"{name} not found (it is never downloaded); looked for {', '.join(str(p) for p in candidates)}. Put the "
        f"python-version tarball {CIFAR_ARCHIVES[name][0]} (or its extracted folder) there"
    )


def read_cifar_batch(raw: bytes, where: str, label_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch (its bytes) as images and labels.

    Args:
      raw: the file's bytes.
      where: how to name the file in errors.
      label_kind: "cifar10" (key ``b"labels"``, 0..9), "fine" (``b"fine_labels"``, 0..99) or "coarse"
        (``b"coarse_labels"``, 0..19).
    Returns:
      images (N, 32, 32, 3) uint8 (HWC, from the rows' CHW order), labels (N,) int64.
    Raises:
      ValueError: a global other than numpy's arrays and dtypes, not a pickle, a missing key, or data / labels
        of the wrong type, shape or range (names ``where``).
    """
    if label_kind not in _LABEL_KEYS:
        raise ValueError(f"label_kind must be one of {tuple(_LABEL_KEYS)}, got {label_kind!r}")
    try:
        batch = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobalError as e:
        raise ValueError(f"{where}: {e}") from e
    except Exception as e:  # pickle raises many types on garbage (EOFError, KeyError, IndexError, ...)
        raise ValueError(f"{where}: not a CIFAR batch pickle ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{where}: a CIFAR batch is a dict, got {type(batch).__name__}")
    label_key = _LABEL_KEYS[label_kind]
    for key in (b"data", label_key):
        if key not in batch:
            raise ValueError(f"{where}: no key {key!r}; the batch has {sorted(batch, key=repr)}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{where}: b'data' must be a uint8 array of shape (N, 3072), got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    try:
        labels = np.asarray(batch[label_key])
    except Exception as e:
        raise ValueError(f"{where}: {label_key!r} is not a list of ints ({e})") from e
    n, k = data.shape[0], CIFAR_NUM_CLASSES[label_kind]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: {label_key!r} must be {n} ints, got {labels.dtype} of shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"{where}: {label_key!r} must lie in 0..{k - 1}, found {labels.min()}..{labels.max()}")
    images = np.ascontiguousarray(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int64)


def _read_sources(source: pathlib.Path, name: str, split: str, verify: bool) -> list[tuple[str, bytes]]:
    """(where, bytes) of each batch file of the split, from the folder or the tarball, checksums checked."""
    files = CIFAR_FILES[name][split]
    out = []
    if source.is_dir():
        for file_name, md5 in files:
            path = source / file_name
            if not path.is_file():
                raise FileNotFoundError(f"CIFAR batch file {path} not found")
            raw = path.read_bytes()
            if verify:
                _check_md5(str(path), md5, _md5(raw))
            out.append((str(path), raw))
        return out
    if verify:
        _check_md5(str(source), CIFAR_ARCHIVES[name][1], _md5(path=source))
    try:
        with tarfile.open(source, "r:gz") as tar:
            for file_name, _ in files:
                member_name = f"{CIFAR_FOLDERS[name]}/{file_name}"
                where = f"{source}:{member_name}"
                try:
                    member = tar.getmember(member_name)
                except KeyError:
                    raise ValueError(f"{source} has no member {member_name}") from None
                if not member.isfile():
                    raise ValueError(f"{where} is not a regular file in the tarball")
                out.append((where, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{source}: not a readable .tar.gz ({type(e).__name__}: {e})") from e
    return out


def _stat_key(path: pathlib.Path):
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _source_key(source: pathlib.Path, name: str, split: str) -> tuple:
    """What the cache is keyed on: the stat of the tarball, or of every batch file of the split in the folder."""
    if not source.is_dir():
        return (_stat_key(source),)
    paths = [source / file_name for file_name, _ in CIFAR_FILES[name][split]]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR batch file {path} not found")
    return tuple(_stat_key(p) for p in paths)


@functools.lru_cache(maxsize=2)
def _load_cached(source: pathlib.Path, source_key: tuple, name: str, split: str, label_kind: str, verify: bool):
    del source_key  # only keys the cache
    parts = [read_cifar_batch(raw, where, label_kind) for where, raw in _read_sources(source, name, split, verify)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_cifar(
    name: str, split: str = "train", data_dir=None, *, verify_checksums: bool = True, labels: str = "fine"
) -> tuple[np.ndarray, np.ndarray]:
    """One split of CIFAR-10 or CIFAR-100 (:func:`find_cifar` says where the files are looked for).

    Args:
      name: "cifar10" or "cifar100".
      split: "train" (50,000 examples) or "test" (10,000).
      data_dir: the data directory; None reads ``$GENDL_DATA_DIR``.
      verify_checksums: check the published MD5 of the tarball, or of each extracted batch file read.
      labels: for CIFAR-100, "fine" (100 classes) or "coarse" (20 superclasses); ignored for CIFAR-10.
    Returns:
      images (N, 32, 32, 3) uint8 (HWC), labels (N,) int64; read-only arrays, cached in-process (keyed on the
      resolved paths, mtimes and sizes of the files read), so repeated calls are free. Copy them before modifying.
    Raises:
      FileNotFoundError: no data directory, no folder or tarball, or a batch file missing from the folder.
      ValueError: a bad name, split or labels; an MD5 mismatch (names the file, the expected and the found
        checksum); a member missing from the tarball; a batch that is not in the published format or that names
        a refused pickle global.
    """
    name = _check_name(name)
    split = _check_split(split)
    if name == "cifar10":
        label_kind = "cifar10"
    elif labels in ("fine", "coarse"):
        label_kind = labels
    else:
        raise ValueError(f"labels for cifar100 must be 'fine' or 'coarse', got {labels!r}")
    source = find_cifar(name, data_dir)
    return _load_cached(
        source.resolve(), _source_key(source, name, split), name, split, label_kind, bool(verify_checksums)
    )


def load_cifar10(split: str = "train", data_dir=None, *, verify_checksums: bool = True):
    """CIFAR-10: :func:`load_cifar` with ``name="cifar10"``; labels 0..9."""
    return load_cifar("cifar10", split, data_dir, verify_checksums=verify_checksums)


def load_cifar100(split: str = "train", data_dir=None, *, verify_checksums: bool = True, labels: str = "fine"):
    """CIFAR-100: :func:`load_cifar` with ``name="cifar100"``; fine labels 0..99 or coarse labels 0..19."""
    return load_cifar("cifar100", split, data_dir, verify_checksums=verify_checksums, labels=labels)
