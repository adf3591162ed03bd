"""Datasets by name: toy mixtures, MNIST (IDX), scikit-learn digits, or any prepared TFDS dataset."""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from gendl_jax.data import mnist as _mnist
from gendl_jax.data.toy import TOY_DISTRIBUTIONS, GaussianMixture

__all__ = [
    "DEFAULT_DATA",
    "DIGITS_SPLITS",
    "KNOWN_DATASETS",
    "ArrayDataset",
    "ToyDataset",
    "binarize_dataset",
    "load_dataset",
]

KNOWN_DATASETS: tuple[str, ...] = ("ring8", "grid25", "swissroll", "mnist", "digits")
DEFAULT_DATA = "grid25"
"""The dataset of a run that names none: the 5x5 grid of Gaussians (embedded, no download)."""
DIGITS_SPLITS: tuple[str, ...] = ("train", "test", "all")


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A finite image dataset held in memory as raw integers.

    Attributes:
      name: dataset name.
      images: (N, H, W, C) uint8, every value in [0, max_value].
      labels: (N,) integer class labels, or None.
      max_value: the largest possible pixel value (255 for MNIST, 16 for sklearn digits);
        pixels scale exactly as ``lo + (hi - lo) * x / max_value``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    max_value: int

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        images = self.images
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise TypeError(f"images must have dtype uint8, got {images.dtype}")
        if images.ndim != 4 or images.shape[0] < 1:
            raise ValueError(f"images must have shape (N, H, W, C) with N >= 1, got {images.shape}")
        mv = self.max_value
        if isinstance(mv, bool) or not isinstance(mv, numbers.Integral) or not 1 <= int(mv) <= 255:
            raise ValueError(f"max_value must be an int in [1, 255], got {mv!r}")
        object.__setattr__(self, "max_value", int(mv))
        top = int(images.max())
        if top > self.max_value:
            raise ValueError(f"images contain the value {top} > max_value={self.max_value}")
        if self.labels is not None:
            labels = self.labels
            if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
                raise TypeError(
                    f"labels must be an integer numpy array or None, got {type(labels).__name__} {getattr(labels, 'dtype', '')}"
                )
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape ({images.shape[0]},) to match images, got {labels.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Example shape (H, W, C)."""
        return tuple(int(s) for s in self.images.shape[1:])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, shape={self.shape}, "
            f"labels={'yes' if self.labels is not None else 'no'}, max_value={self.max_value})"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class ToyDataset:
    """An infinite 2-D dataset: fresh samples of ``distribution`` every step."""

    name: str
    distribution: GaussianMixture

    def __post_init__(self):
        if not isinstance(self.distribution, GaussianMixture):
            raise TypeError(f"distribution must be a GaussianMixture, got {type(self.distribution).__name__}")

    @property
    def shape(self) -> tuple[int]:
        """Example shape (2,)."""
        return (2,)


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
        f"unknown dataset {name!r}: known names are {', '.join(KNOWN_DATASETS)}; TFDS could not open it from {where}"
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


def load_dataset(name: str, split: str = "train", data_dir=None) -> ArrayDataset | ToyDataset:
    """Loads a dataset by name.

    Names:
      "ring8", "grid25", "swissroll": :class:`ToyDataset` with the default constants of
        :mod:`gendl_jax.data.toy` (split and data_dir ignored).
      "mnist": IDX files (``data_dir`` or ``$GENDL_DATA_DIR``); split "train" (60000) or
        "test" (10000); images (N, 28, 28, 1) uint8, max_value 255, labels uint8.
      "digits": scikit-learn's bundled 8x8 digits, images (N, 8, 8, 1) uint8 with
        max_value 16. Deterministic split by index: "train" = examples with i % 5 != 0
        (1437), "test" = i % 5 == 0 (360), "all" = 1797.
      anything else: ``tfds.data_source(name, split=split, data_dir=data_dir,
        download=False)`` (never downloads), materialised into numpy from the "image"
        (uint8) and, if present, "label" features; max_value 255.

    Raises:
      ValueError: unknown name that TFDS cannot open locally (the message lists the known
        names and the TFDS error), or a bad split.
      ImportError: "digits" without scikit-learn.
      FileNotFoundError: MNIST files missing.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(split, str):
        raise TypeError(f"split must be a str, got {type(split).__name__}")
    if name in TOY_DISTRIBUTIONS:
        return ToyDataset(name, TOY_DISTRIBUTIONS[name]())
    if name == "mnist":
        images, labels = _mnist.load_mnist(split, data_dir=data_dir)
        return ArrayDataset("mnist", images[..., None], labels, 255)
    if name == "digits":
        return _load_digits(split)
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
