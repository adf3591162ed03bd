"""The dataset kinds the batch iterator and the fit loop read, and the held-out split of datasets without one.

* :class:`ArrayDataset`: a finite set of images held as raw integers (MNIST, digits, CIFAR, folders, arrays);
* :class:`PointCloudDataset`: a finite set of points in R^d (a float ``.npy`` / ``.npz`` file);
* :class:`ToyDataset`: an infinite 2-D Gaussian mixture with known modes.

A folder of images or an array file has no split of its own: :func:`held_out_split` fixes one from the
number of examples alone, so that ``split="train"`` and ``split="test"`` are disjoint, together cover the
data, and are the same on every machine and every call.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from gendl_jax.data.toy import GaussianMixture

__all__ = [
    "HELD_OUT_FRACTION",
    "HELD_OUT_SEED",
    "HELD_OUT_SPLITS",
    "ArrayDataset",
    "PointCloudDataset",
    "ToyDataset",
    "held_out_split",
    "select_split",
]

HELD_OUT_FRACTION = 0.1
"""Share of a folder's or an array file's examples held out as its ``"test"`` split (at least one)."""
HELD_OUT_SEED = 28
"""First word of the seed of the held-out permutation: ``np.random.default_rng([HELD_OUT_SEED, n])``."""
HELD_OUT_SPLITS: tuple[str, ...] = ("train", "test", "all")


def _check_name(name) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")


def _check_labels(labels, n: int) -> None:
    if labels is None:
        return
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be an integer numpy array or None, got {type(labels).__name__} {getattr(labels, 'dtype', '')}"
        )
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the examples, got {labels.shape}")


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
        _check_name(self.name)
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
        _check_labels(self.labels, images.shape[0])

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
class PointCloudDataset:
    """A finite set of points in R^d (no known modes); batches hold the points as they are (no scaling).

    Attributes:
      name: dataset name.
      points: (N, d) float32, N >= 1, d >= 1, every value finite.
      labels: (N,) integer class labels, or None.
    """

    name: str
    points: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self):
        _check_name(self.name)
        points = self.points
        if not isinstance(points, np.ndarray):
            raise TypeError(f"points must be a numpy array, got {type(points).__name__}")
        if points.dtype != np.float32:
            raise TypeError(f"points must have dtype float32, got {points.dtype}")
        if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
            raise ValueError(f"points must have shape (N, d) with N >= 1 and d >= 1, got {points.shape}")
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(
                f"points must be finite; {bad.size} row(s) hold NaN or inf (first rows: {bad[:5].tolist()})"
            )
        _check_labels(self.labels, points.shape[0])

    @property
    def shape(self) -> tuple[int]:
        """Example shape (d,)."""
        return (int(self.points.shape[1]),)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        return (
            f"PointCloudDataset(name={self.name!r}, n={len(self)}, d={self.shape[0]}, "
            f"labels={'yes' if self.labels is not None else 'no'})"
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


def held_out_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split of ``n`` examples into (train, test) indices, for data that comes without a split.

    ``perm = np.random.default_rng([HELD_OUT_SEED, n]).permutation(n)``; the test split is the first
    ``max(1, floor(HELD_OUT_FRACTION * n))`` entries of ``perm``, the train split the rest. It depends on
    ``n`` only (not on the pixels, the image size asked for or the machine), so the same files always split
    the same way.

    Args:
      n: number of examples, >= 2.
    Returns:
      (train, test): sorted int64 index arrays, disjoint, together ``0 .. n - 1``.
    Raises:
      ValueError: ``n < 2`` (no split leaves an example on each side).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    n = int(n)
    if n < 2:
        raise ValueError(f"a held-out split needs at least 2 examples (one on each side), got {n}")
    perm = np.random.default_rng([HELD_OUT_SEED, n]).permutation(n)
    n_test = max(1, int(np.floor(HELD_OUT_FRACTION * n)))
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)


def select_split(dataset: ArrayDataset | PointCloudDataset, split: str) -> ArrayDataset | PointCloudDataset:
    """``dataset``'s examples of ``split`` by :func:`held_out_split`: ``"train"``, ``"test"`` or ``"all"``.

    Returns a dataset of the same kind and name (``"all"`` returns ``dataset`` itself).

    Raises:
      TypeError: ``dataset`` is of another kind.
      ValueError: an unknown split, or a dataset of one example (which cannot be split).
    """
    if not isinstance(dataset, (ArrayDataset, PointCloudDataset)):
        raise TypeError(f"dataset must be an ArrayDataset or a PointCloudDataset, got {type(dataset).__name__}")
    if split not in HELD_OUT_SPLITS:
        raise ValueError(
            f"split for {dataset.name!r} must be one of {HELD_OUT_SPLITS} (the held-out split of data without "
            f"its own: {HELD_OUT_FRACTION:.0%} held out as 'test'), got {split!r}"
        )
    if split == "all":
        return dataset
    if len(dataset) < 2:
        raise ValueError(
            f"dataset {dataset.name!r} has 1 example, which cannot be split into 'train' and 'test'; "
            "use split='all' or add examples"
        )
    idx = held_out_split(len(dataset))[0 if split == "train" else 1]
    labels = None if dataset.labels is None else dataset.labels[idx]
    if isinstance(dataset, ArrayDataset):
        return ArrayDataset(dataset.name, dataset.images[idx], labels, dataset.max_value)
    return PointCloudDataset(dataset.name, dataset.points[idx], labels)
