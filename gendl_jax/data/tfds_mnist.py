"""A TFDS builder that stores MNIST from its IDX files as array_record, readable without TensorFlow.

TensorFlow is not needed (nor installed): the features are plain ``tfds.features.Tensor``
(the image) and ``tfds.features.ClassLabel`` (the label), which encode and decode with numpy
only, and ``array_record`` files are read through ``tfds.data_source`` (random access).

The builder reads the IDX files from its *manual directory*:
``download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=idx_dir))``.
:func:`prepare_mnist_tfds` does this for you, with ``idx_dir`` resolved like
:func:`gendl_jax.data.mnist.load_mnist` (argument, else ``$GENDL_DATA_DIR``, the files in it
or in its ``mnist/``), checksums verified.

Records keep the IDX order (shuffling is disabled): record i of split "train" holds image
``load_mnist("train")[0][i]`` and label ``load_mnist("train")[1][i]``. Each record is
``{"image": (28, 28, 1) uint8, "label": int}``.
"""

from __future__ import annotations

import os
import pathlib
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from gendl_jax.data import mnist as _mnist

__all__ = ["MNIST_TFDS_NAME", "MnistIdx", "mnist_data_source", "prepare_mnist_tfds"]

MNIST_TFDS_NAME = "mnist_idx"


class MnistIdx(tfds.core.GeneratorBasedBuilder):
    """MNIST from the original IDX files in the manual directory; splits "train" and "test"."""

    # The class name registers the dataset as "mnist_idx".
    # TFDS 4.9.10 derives `code_path` through `importlib_resources` (a backport it only
    # installs for Python < 3.9) whenever the builder lives in an installed package, so
    # download_and_prepare fails with ModuleNotFoundError; giving the path directly avoids that.
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "MNIST from IDX files; Tensor image feature (no TensorFlow needed)."
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the directory that holds the four MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, "
        "optionally SHA256SUMS), or a parent with an mnist/ subdirectory, as "
        "tfds.download.DownloadConfig(manual_dir=...), or use "
        "gendl_jax.data.prepare_mnist_tfds(tfds_data_dir, idx_dir)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo is built directly: dataset_info_from_configs() would look for metadata
        # files in this module's package directory.
        return tfds.core.DatasetInfo(
            builder=self,
            description="MNIST handwritten digits, read from the original IDX files.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            homepage="http://yann.lecun.com/exdb/mnist/",
        )

    def _split_generators(self, dl_manager):
        idx_dir = pathlib.Path(dl_manager.manual_dir)
        return {split: self._generate_examples(split, idx_dir) for split in ("train", "test")}

    def _generate_examples(self, split: str, idx_dir: pathlib.Path):
        images, labels = _mnist.load_mnist(split, data_dir=idx_dir, verify_checksums=True)
        for i in range(images.shape[0]):
            yield i, {"image": images[i][:, :, None], "label": int(labels[i])}


def _idx_dir(idx_dir) -> pathlib.Path:
    # Both splits must be present; find_mnist_dir raises FileNotFoundError naming the paths.
    d = _mnist.find_mnist_dir("train", idx_dir)
    _mnist.find_mnist_dir("test", d)
    return d


def _check_tfds_dir(tfds_data_dir) -> pathlib.Path:
    if not isinstance(tfds_data_dir, (str, os.PathLike)):
        raise TypeError(f"tfds_data_dir must be a str or os.PathLike, got {type(tfds_data_dir).__name__}")
    return pathlib.Path(tfds_data_dir).expanduser()


def prepare_mnist_tfds(tfds_data_dir, idx_dir=None) -> None:
    """Builds ``mnist_idx`` (array_record) under ``tfds_data_dir`` unless already prepared.

    Args:
      tfds_data_dir: TFDS data directory (created if missing); the dataset goes to
        ``<tfds_data_dir>/mnist_idx/1.0.0``.
      idx_dir: directory of the IDX files; None reads ``$GENDL_DATA_DIR``. Not consulted when
        the dataset is already prepared.
    """
    data_dir = _check_tfds_dir(tfds_data_dir)
    builder = MnistIdx(data_dir=str(data_dir), file_format="array_record")
    if builder.is_prepared():
        return
    manual = _idx_dir(idx_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)),
    )


def mnist_data_source(split: str, tfds_data_dir, idx_dir=None):
    """Random-access data source over one split of ``mnist_idx`` (prepared first if needed).

    Args:
      split: "train" (60000 records), "test" (10000) or any TFDS split string ("train[:100]").
      tfds_data_dir: TFDS data directory.
      idx_dir: IDX directory used only when the dataset must be built.
    Returns:
      ``tfds.data_source(...)``: ``len()``, ``ds[i]`` and ``ds.__getitems__(list)`` give
      dicts ``{"image": (28, 28, 1) uint8 ndarray, "label": int}``.
    """
    data_dir = _check_tfds_dir(tfds_data_dir)
    prepare_mnist_tfds(data_dir, idx_dir)
    return tfds.data_source(MNIST_TFDS_NAME, split=split, data_dir=str(data_dir), download=False)
