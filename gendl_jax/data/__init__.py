"""Data: toy mixtures with known modes, MNIST (IDX files and a TFDS builder), any prepared TFDS
dataset by name, and a deterministic, resumable, per-process-sharded batch iterator.

The TFDS builder (:mod:`gendl_jax.data.tfds_mnist`) is imported lazily, on first access to
``MnistIdx``, ``prepare_mnist_tfds`` or ``mnist_data_source``.
"""

from gendl_jax.data.iterator import BatchIterator, make_iterator, map_in_batches
from gendl_jax.data.mnist import (
    DATA_DIR_ENV,
    MNIST_FILES,
    MNIST_SIZES,
    find_mnist_dir,
    load_mnist,
    read_idx,
    resolve_data_dir,
)
from gendl_jax.data.registry import (
    DEFAULT_DATA,
    KNOWN_DATASETS,
    ArrayDataset,
    ToyDataset,
    binarize_dataset,
    load_dataset,
)
from gendl_jax.data.toy import TOY_DISTRIBUTIONS, GaussianMixture, grid25, ring8, swissroll

_LAZY_TFDS = ("MnistIdx", "prepare_mnist_tfds", "mnist_data_source")

__all__ = [
    "ArrayDataset",
    "BatchIterator",
    "DATA_DIR_ENV",
    "DEFAULT_DATA",
    "GaussianMixture",
    "KNOWN_DATASETS",
    "MNIST_FILES",
    "MNIST_SIZES",
    "TOY_DISTRIBUTIONS",
    "ToyDataset",
    "binarize_dataset",
    "find_mnist_dir",
    "grid25",
    "load_dataset",
    "load_mnist",
    "make_iterator",
    "map_in_batches",
    "read_idx",
    "resolve_data_dir",
    "ring8",
    "swissroll",
    *_LAZY_TFDS,
]


def __getattr__(name):
    if name in _LAZY_TFDS:
        from gendl_jax.data import tfds_mnist

        return getattr(tfds_mnist, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
