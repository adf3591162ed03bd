"""MNIST from its original IDX files (gzipped or raw), with checksum and shape checks.

Where the files are: ``load_mnist(data_dir=...)``, else the environment variable
``GENDL_DATA_DIR``. The four files may sit in that directory itself or in its ``mnist/``
subdirectory. If a ``SHA256SUMS`` file (``sha256sum`` format) is beside them, the digests of
the files read are verified.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import pathlib
import zlib

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "MNIST_FILES",
    "MNIST_SIZES",
    "find_mnist_dir",
    "load_mnist",
    "read_idx",
    "resolve_data_dir",
]

DATA_DIR_ENV = "GENDL_DATA_DIR"

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_SIZES: dict[str, int] = {"train": 60000, "test": 10000}

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def _read_exact(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _count_rest(f) -> int:
    total = 0
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return total
        total += len(chunk)


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (gzip-compressed or raw; detected from the first two bytes).

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dims, each dim as a big-endian uint32, then the
    big-endian payload of exactly prod(dims) items.

    Returns:
      Array of shape dims (e.g. (N, 28, 28) for MNIST images, (N,) for labels), native byte
      order, writable.
    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: bad magic number, unknown type code, zero dims, corrupt gzip stream, or a
        payload that is shorter or longer than prod(dims) items (message gives both sizes).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rb") as f:
            head = _read_exact(f, 4)
            if len(head) < 4:
                raise ValueError(f"{path}: not an IDX file: only {len(head)} bytes, expected a 4-byte magic number")
            if head[0] != 0 or head[1] != 0:
                raise ValueError(
                    f"{path}: bad IDX magic number {head.hex()}: expected two zero bytes, a type code and ndim"
                )
            code, ndim = head[2], head[3]
            if code not in _IDX_DTYPES:
                known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
                raise ValueError(f"{path}: unsupported IDX type code 0x{code:02X}; expected one of {known}")
            if ndim < 1:
                raise ValueError(f"{path}: IDX header gives ndim = 0; expected >= 1")
            dims_raw = _read_exact(f, 4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise ValueError(
                    f"{path}: IDX header truncated: expected {ndim} dims ({4 * ndim} bytes), got {len(dims_raw)} bytes"
                )
            dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
            dtype = _IDX_DTYPES[code]
            expected = math.prod(dims) * dtype.itemsize
            # Grows with the bytes actually present, so a corrupt header claiming a huge size
            # gives the size error below rather than a huge allocation.
            buf = bytearray()
            while len(buf) < expected:
                chunk = f.read(min(_CHUNK, expected - len(buf)))
                if not chunk:
                    break
                buf += chunk
            got = len(buf)
            extra = _count_rest(f) if got == expected else 0
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip stream: {e}") from e
    if got != expected or extra:
        dims_str = " x ".join(str(d) for d in dims)
        raise ValueError(
            f"{path}: IDX payload has {got + extra} bytes, expected {expected} "
            f"(dims {dims_str}, {dtype.itemsize}-byte items); the file is "
            f"{'truncated' if got < expected else 'longer than its header says'}"
        )
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    else:
        arr = arr.view(dtype.newbyteorder("="))
    return arr


def resolve_data_dir(data_dir=None) -> pathlib.Path:
    """The data directory: ``data_dir`` if given, else ``$GENDL_DATA_DIR`` (empty = unset).

    Raises:
      FileNotFoundError: neither is set, or the directory does not exist.
    """
    if data_dir is None:
        env = os.environ.get(DATA_DIR_ENV, "")
        if not env:
            raise FileNotFoundError(
                f"no data directory: pass data_dir=... or set the environment variable {DATA_DIR_ENV}"
            )
        data_dir, source = env, f"${DATA_DIR_ENV}"
    else:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be a str or os.PathLike, got {type(data_dir).__name__}")
        source = "data_dir"
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data directory {path} (from {source}) does not exist or is not a directory")
    return path


def _check_split(split) -> str:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    return split


def find_mnist_dir(split: str = "train", data_dir=None) -> pathlib.Path:
    """The directory that holds the split's two IDX files: the data dir itself or its ``mnist/``.

    Raises:
      FileNotFoundError: naming every full path looked for.
    """
    split = _check_split(split)
    root = resolve_data_dir(data_dir)
    names = MNIST_FILES[split]
    candidates = [root, root / "mnist"]
    for d in candidates:
        if all((d / name).is_file() for name in names):
            return d
    missing = [str(d / name) for d in candidates for name in names if not (d / name).is_file()]
    raise FileNotFoundError(f"MNIST {split} files not found; missing: {', '.join(missing)}")


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sha256sums(path: pathlib.Path) -> dict[str, str]:
    sums = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{path}:{lineno}: expected '<64 hex digits>  <file name>', got {line!r}")
        sums[parts[1].lstrip("*").strip()] = parts[0].lower()
    return sums


def _stat_key(path: pathlib.Path):
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _load_cached(images_key, labels_key, sums_key, split: str, verify: bool):
    images_path = pathlib.Path(images_key[0])
    labels_path = pathlib.Path(labels_key[0])
    if verify and sums_key is not None:
        sums_path = pathlib.Path(sums_key[0])
        sums = _read_sha256sums(sums_path)
        for p in (images_path, labels_path):
            if p.name not in sums:
                raise ValueError(f"{sums_path} has no entry for {p.name}")
            actual = _sha256(p)
            if actual != sums[p.name]:
                raise ValueError(f"SHA-256 mismatch for {p}: expected {sums[p.name]} (from {sums_path}), got {actual}")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    n = MNIST_SIZES[split]
    if images.dtype != np.uint8 or images.shape != (n, 28, 28):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape {(n, 28, 28)}, got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != (n,):
        raise ValueError(f"{labels_path}: expected uint8 labels of shape {(n,)}, got {labels.dtype} {labels.shape}")
    if labels.max() > 9:
        raise ValueError(f"{labels_path}: labels must lie in 0..9, found {int(labels.max())}")
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def load_mnist(split: str = "train", data_dir=None, verify_checksums: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Loads one MNIST split from its IDX files.

    Args:
      split: "train" (60000 examples) or "test" (10000).
      data_dir: directory holding the files (or a parent with ``mnist/``); None reads
        ``$GENDL_DATA_DIR``.
      verify_checksums: verify SHA-256 digests against ``SHA256SUMS`` when that file exists.
    Returns:
      images: (N, 28, 28) uint8 in [0, 255]; labels: (N,) uint8 in [0, 9]. Both arrays are
      read-only: they are cached in-process (keyed on the files' resolved paths, mtimes and
      sizes), so repeated calls are free. Copy them before modifying.
    Raises:
      FileNotFoundError: no directory or missing file (naming the full path).
      ValueError: checksum mismatch, malformed IDX file, wrong shape or label range.
    """
    split = _check_split(split)
    d = find_mnist_dir(split, data_dir)
    images_path, labels_path = (d / name for name in MNIST_FILES[split])
    sums_path = d / "SHA256SUMS"
    sums_key = _stat_key(sums_path) if (verify_checksums and sums_path.is_file()) else None
    return _load_cached(_stat_key(images_path), _stat_key(labels_path), sums_key, split, bool(verify_checksums))
