"""Datasets by name: toy mixtures, MNIST (IDX), scikit-learn digits, CIFAR-10/100, a folder of images, an
``.npy`` / ``.npz`` file, or any prepared TFDS dataset."""

from __future__ import annotations

import functools
import os
import pathlib

import numpy as np

from gendl_jax.data import cifar, files
from gendl_jax.data import mnist as mnist_idx
from gendl_jax.data.datasets import ArrayDataset, PointCloudDataset, ToyDataset, select_split
from gendl_jax.data.toy import TOY_DISTRIBUTIONS

__all__ = [
    "DEFAULT_DATA",
    "DIGITS_SPLITS",
    "KNOWN_DATASETS",
    "ArrayDataset",
    "PointCloudDataset",
    "ToyDataset",
    "binarize_dataset",
    "data_label",
    "is_data_path",
    "load_dataset",
]

KNOWN_DATASETS: tuple[str, ...] = ("ring8", "grid25", "swissroll", "mnist", "digits", "cifar10", "cifar100")
"""The names :func:`load_dataset` knows; it also takes a folder of images, an ``.npy`` / ``.npz`` path and the
name of any TFDS dataset prepared on this machine."""
DEFAULT_DATA = "grid25"
"""The dataset of a run that names none: the 5x5 grid of Gaussians (embedded, no download)."""
DIGITS_SPLITS: tuple[str, ...] = ("train", "test", "all")


def _load_digits(split: str) -> ArrayDataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from e
    if split not in DIGITS_SPLITS:
        raise ValueError(f"split for 'digits' must be one of {DIGITS_SPLITS}, got {split!r}")
    bunch = load_digits()
    images = np.asarray(bunch.images)
    if not np.array_equal(images, np.round(images)) or images.min() < 0 or images.max() > 16:
        raise ValueError("sklearn digits images are expected to be integers in [0, 16]")
    images = images.astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target).astype(np.uint8)
    idx = np.arange(images.shape[0])
    if split == "train":
        keep = idx % 5 != 0
    elif split == "test":
        keep = idx % 5 == 0
    else:
        keep = np.ones_like(idx, dtype=bool)
    return ArrayDataset("digits", images[keep], labels[keep], 16)


def _load_tfds(name: str, split: str, data_dir) -> ArrayDataset:
    import tensorflow_datasets as tfds

    where = str(data_dir) if data_dir is not None else f"the default TFDS data dir ({tfds.core.constants.DATA_DIR})"
    prefix = (
        f"unknown dataset {name!r}: known names are {', '.join(KNOWN_DATASETS)}, or a folder of images or an "
        f".npy / .npz file (no such folder or file); TFDS could not open it from {where}"
    )
    try:
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
    except Exception as e:  # TFDS raises many types (DatasetNotFoundError, ...)
        msg = str(e).split("\n", 1)[0][:300]  # the first line; the rest lists every TFDS dataset
        raise ValueError(f"{prefix}: {type(e).__name__}: {msg}") from e
    if not prepared:
        raise ValueError(
            f"{prefix}: TFDS has a builder for {name!r} but the dataset is not prepared there "
            f"(this function never downloads; prepare it in array_record format, e.g. "
            f"`tfds build {name} --file_format=array_record --data_dir=...`)"
        )
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:  # e.g. NotImplementedError for TFRecord-only data, unknown split
        msg = str(e).split("\n", 1)[0][:300]
        raise ValueError(
            f"TFDS dataset {name!r} in {where} could not be opened as a data source with "
            f"split={split!r}: {type(e).__name__}: {msg}"
        ) from e
    n = len(source)
    if n == 0:
        raise ValueError(f"TFDS dataset {name!r} split {split!r} in {where} is empty")
    first = source[0]
    if not isinstance(first, dict) or "image" not in first:
        keys = sorted(first) if isinstance(first, dict) else type(first).__name__
        raise ValueError(f"TFDS dataset {name!r} has no 'image' feature (records have {keys})")
    images, labels = [], []
    has_labels = "label" in first
    chunk = 4096
    for start in range(0, n, chunk):
        for rec in source.__getitems__(list(range(start, min(n, start + chunk)))):
            images.append(np.asarray(rec["image"]))
            if has_labels:
                labels.append(rec["label"])
    x = np.stack(images)
    if x.dtype != np.uint8:
        raise TypeError(f"TFDS dataset {name!r}: 'image' must be uint8, got {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"TFDS dataset {name!r}: images must be (H, W) or (H, W, C), got {x.shape[1:]}")
    y = np.asarray(labels, dtype=np.int64) if has_labels else None
    return ArrayDataset(name, x, y, 255)


def is_data_path(name) -> bool:
    """Whether :func:`load_dataset` reads ``name`` from the file system: an ``.npy`` / ``.npz`` path (existing or
    not) or an existing folder (a folder is only taken when no known name is spelled the same)."""
    if not isinstance(name, (str, os.PathLike)):
        return False
    if files.is_array_file(name):
        return True
    return str(name) not in KNOWN_DATASETS and pathlib.Path(name).expanduser().is_dir()


def data_label(name: str) -> str:
    """A short label of a dataset name for folder names and titles: the name itself, or for a path its last
    component without an array suffix (``"data/cloud.npy"`` -> ``"cloud"``, ``"photos/"`` -> ``"photos"``)."""
    if not is_data_path(name):
        return str(name)
    path = pathlib.Path(name).expanduser()
    label = path.stem if files.is_array_file(path) else path.name
    return label or path.resolve().name or "data"


def _stat_key(path: pathlib.Path):
    st = path.stat()
    return (path.name, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def _folder_cached(root: pathlib.Path, signature: tuple, image_size: int, name: str) -> ArrayDataset:
    del signature  # only keys the cache: the relative paths, mtimes and sizes of the images
    ds = files.load_image_folder(root, image_size, name=name)
    ds.images.flags.writeable = False
    if ds.labels is not None:
        ds.labels.flags.writeable = False
    return ds


def _load_folder(name, image_size) -> ArrayDataset:
    if image_size is None:
        raise ValueError(
            f"{name} is a folder of images: give image_size (--image-size N), the side its images are resized "
            "and centre-cropped to (28, 32 or 64 for the DCGAN networks)"
        )
    root = pathlib.Path(name).expanduser()
    paths = files.list_image_files(root)
    signature = tuple((p.relative_to(root).as_posix(), *_stat_key(p)[1:]) for p in paths)
    return _folder_cached(root.resolve(), signature, image_size, str(name))


def load_dataset(
    name: str, split: str = "train", data_dir=None, *, image_size: int | None = None, verify_checksums: bool = True
) -> ArrayDataset | PointCloudDataset | ToyDataset:
    """Loads a dataset by name or path.

    Names:
      "ring8", "grid25", "swissroll": :class:`ToyDataset` with the default constants of
        :mod:`gendl_jax.data.toy` (split and data_dir ignored).
      "mnist": IDX files (``data_dir`` or ``$GENDL_DATA_DIR``); split "train" (60000) or
        "test" (10000); images (N, 28, 28, 1) uint8, max_value 255, labels uint8.
      "digits": scikit-learn's bundled 8x8 digits, images (N, 8, 8, 1) uint8 with
        max_value 16. Deterministic split by index: "train" = examples with i % 5 != 0
        (1437), "test" = i % 5 == 0 (360), "all" = 1797.
      "cifar10", "cifar100": the python-version tarball or its extracted folder under ``data_dir`` or
        ``$GENDL_DATA_DIR`` (:func:`gendl_jax.data.cifar.load_cifar`; never downloaded, MD5s checked); split
        "train" (50000) or "test" (10000); images (N, 32, 32, 3) uint8, max_value 255, labels int64 (CIFAR-100:
        the 100 fine labels).
      a path ending with ``.npy`` / ``.npz``: :func:`gendl_jax.data.files.load_array_file` (uint8 images ->
        :class:`ArrayDataset`, float (N, d) -> :class:`PointCloudDataset`).
      an existing folder: :func:`gendl_jax.data.files.load_image_folder` with ``image_size`` (required); labels
        from class sub-folders. Cached in-process (keyed on the images' paths, mtimes and sizes).
      anything else: ``tfds.data_source(name, split=split, data_dir=data_dir,
        download=False)`` (never downloads), materialised into numpy from the "image"
        (uint8) and, if present, "label" features; max_value 255.

    A folder or an array file has no split of its own: "train" and "test" are the fixed held-out split of
    :func:`gendl_jax.data.datasets.held_out_split` (10% of the examples, at least one, held out as "test",
    chosen by a permutation seeded from the number of examples), disjoint and together the whole data; "all"
    is every example. The dataset's name is ``name`` as given, for every split.

    Args:
      name: a known name, a path or a TFDS name.
      split: the split (see above).
      data_dir: where MNIST, CIFAR or TFDS data are (None: ``$GENDL_DATA_DIR``, or TFDS's default).
      image_size: for a folder of images: the side every image is resized and centre-cropped to; must be None
        for every other dataset (their images keep their size).
      verify_checksums: check MNIST's SHA256SUMS (when present) and CIFAR's published MD5s.
    Returns:
      An :class:`ArrayDataset`, :class:`PointCloudDataset` or :class:`ToyDataset`.
    Raises:
      ValueError: unknown name that TFDS cannot open locally (the message lists the known
        names and the TFDS error), a bad split, ``image_size`` missing for a folder or given for other data,
        a checksum mismatch, an unreadable file (named).
      ImportError: "digits" without scikit-learn.
      FileNotFoundError: MNIST or CIFAR files, or an array file, missing.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__}")
    folder = is_data_path(name) and not files.is_array_file(name)
    if image_size is not None and not folder:
        raise ValueError(
            f"image_size={image_size!r} applies to a folder of images only; {str(name)!r} is not an existing "
            "folder (the examples of other data keep their shape)"
        )
    if folder:
        return select_split(_load_folder(name, image_size), split)
    if files.is_array_file(name):
        return select_split(files.load_array_file(name, name=str(name)), split)
    name = str(name)
    if name in TOY_DISTRIBUTIONS:
        return ToyDataset(name, TOY_DISTRIBUTIONS[name]())
    if name == "mnist":
        images, labels = mnist_idx.load_mnist(split, data_dir=data_dir, verify_checksums=verify_checksums)
        return ArrayDataset("mnist", images[..., None], labels, 255)
    if name == "digits":
        return _load_digits(split)
    if name in cifar.CIFAR_NAMES:
        images, labels = cifar.load_cifar(name, split, data_dir, verify_checksums=verify_checksums)
        return ArrayDataset(name, images, labels, 255)
    return _load_tfds(name, split, data_dir)


def binarize_dataset(dataset: ArrayDataset, seed: int) -> ArrayDataset:
    """One stochastic binarisation of an image dataset: pixel = 1 with probability value / max_value.

    Returns an :class:`ArrayDataset` named ``<name>-binarized-seed<seed>`` with ``max_value=1``.
    """
    if not isinstance(dataset, ArrayDataset):
        raise TypeError(f"dataset must be an ArrayDataset of images, got {type(dataset).__name__}")
    rng = np.random.default_rng(seed)
    probs = dataset.images.astype(np.float64) / dataset.max_value
    images = (rng.random(probs.shape) < probs).astype(np.uint8)
    return ArrayDataset(f"{dataset.name}-binarized-seed{seed}", images, dataset.labels, 1)
