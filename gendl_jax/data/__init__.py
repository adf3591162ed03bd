"""Data: toy mixtures with known modes, MNIST (IDX files and a TFDS builder), CIFAR-10/100 (python-version
files), a folder of images, an ``.npy`` / ``.npz`` file (images or a point cloud), any prepared TFDS dataset by
name, and a deterministic, resumable, per-process-sharded batch iterator.

The TFDS builder (:mod:`gendl_jax.data.tfds_mnist`) is imported lazily, on first access to
``MnistIdx``, ``prepare_mnist_tfds`` or ``mnist_data_source``.
"""

from gendl_jax.data.cifar import (
    CIFAR_ARCHIVES,
    CIFAR_FILES,
    CIFAR_NAMES,
    RestrictedUnpickler,
    find_cifar,
    load_cifar,
    load_cifar10,
    load_cifar100,
)
from gendl_jax.data.datasets import (
    HELD_OUT_FRACTION,
    ArrayDataset,
    PointCloudDataset,
    ToyDataset,
    held_out_split,
    select_split,
)
from gendl_jax.data.files import (
    IMAGE_EXTENSIONS,
    is_array_file,
    list_image_files,
    load_array_file,
    load_image_folder,
    read_image,
    resize_and_crop,
)
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
    binarize_dataset,
    data_label,
    is_data_path,
    load_dataset,
)
from gendl_jax.data.toy import TOY_DISTRIBUTIONS, GaussianMixture, grid25, ring8, swissroll

_LAZY_TFDS = ("MnistIdx", "prepare_mnist_tfds", "mnist_data_source")

__all__ = [
    "ArrayDataset",
    "BatchIterator",
    "CIFAR_ARCHIVES",
    "CIFAR_FILES",
    "CIFAR_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_DATA",
    "GaussianMixture",
    "HELD_OUT_FRACTION",
    "IMAGE_EXTENSIONS",
    "KNOWN_DATASETS",
    "MNIST_FILES",
    "MNIST_SIZES",
    "PointCloudDataset",
    "RestrictedUnpickler",
    "TOY_DISTRIBUTIONS",
    "ToyDataset",
    "binarize_dataset",
    "data_label",
    "find_cifar",
    "find_mnist_dir",
    "grid25",
    "held_out_split",
    "is_array_file",
    "is_data_path",
    "list_image_files",
    "load_array_file",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_image_folder",
    "load_mnist",
    "make_iterator",
    "map_in_batches",
    "read_idx",
    "read_image",
    "resize_and_crop",
    "resolve_data_dir",
    "ring8",
    "select_split",
    "swissroll",
    *_LAZY_TFDS,
]


def __getattr__(name):
    if name in _LAZY_TFDS:
        from gendl_jax.data import tfds_mnist

        return getattr(tfds_mnist, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
