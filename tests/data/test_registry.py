import dataclasses
import sys

import numpy as np
import pytest

from gendl_jax.data import (
    KNOWN_DATASETS,
    TOY_DISTRIBUTIONS,
    ArrayDataset,
    ToyDataset,
    load_dataset,
    read_idx,
)


def test_known_names():
    assert KNOWN_DATASETS == ("ring8", "grid25", "swissroll", "mnist", "digits", "cifar10", "cifar100")


@pytest.mark.parametrize("name", sorted(TOY_DISTRIBUTIONS))
def test_toy(name):
    ds = load_dataset(name)
    assert isinstance(ds, ToyDataset) and ds.name == name and ds.shape == (2,)
    ref = TOY_DISTRIBUTIONS[name]()
    np.testing.assert_array_equal(ds.distribution.modes, ref.modes)
    assert ds.distribution.std == ref.std


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_mnist(mnist_dir, split, n):
    ds = load_dataset("mnist", split, data_dir=mnist_dir)
    assert isinstance(ds, ArrayDataset)
    assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.uint8
    assert len(ds) == n and ds.shape == (28, 28, 1) and ds.max_value == 255
    prefix = "train" if split == "train" else "t10k"
    np.testing.assert_array_equal(ds.images[..., 0], read_idx(mnist_dir / f"{prefix}-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(ds.labels, read_idx(mnist_dir / f"{prefix}-labels-idx1-ubyte.gz"))


def test_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    parts = {s: load_dataset("digits", s) for s in ("train", "test", "all")}
    assert [len(parts[s]) for s in ("train", "test", "all")] == [1437, 360, 1797]
    full = parts["all"]
    assert full.shape == (8, 8, 1) and full.max_value == 16 and full.images.dtype == np.uint8
    np.testing.assert_array_equal(full.images[..., 0].astype(np.float64), ref.images)
    np.testing.assert_array_equal(full.labels, ref.target)
    idx = np.arange(1797)
    np.testing.assert_array_equal(parts["test"].images, full.images[idx % 5 == 0])
    np.testing.assert_array_equal(parts["train"].labels, full.labels[idx % 5 != 0])
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "validation")


def test_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_dataset("digits")


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError) as info:
        load_dataset("no_such_dataset_xyz", data_dir=tmp_path)
    msg = str(info.value)
    assert "unknown dataset 'no_such_dataset_xyz'" in msg
    assert all(n in msg for n in KNOWN_DATASETS)
    assert str(tmp_path) in msg and "TFDS could not open it" in msg
    assert len(msg) < 1000  # TFDS's list of every dataset is not pasted in


def test_tfds_known_but_not_prepared(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'fashion_mnist'.*not prepared.*array_record"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


def test_cifar_is_read_from_its_own_files_never_downloaded(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"cifar10 not found \(it is never downloaded\).*cifar-10-python.tar.gz"
    ):
        load_dataset("cifar10", data_dir=tmp_path)


def test_tfds_bad_split(tfds_mnist_dir):
    with pytest.raises(ValueError, match=r"mnist_idx.*split='valid'.*Unknown split"):
        load_dataset("mnist_idx", split="valid", data_dir=tfds_mnist_dir)


def test_tfds_fallback_reads_prepared_dataset(tfds_mnist_dir, mnist_dir):
    ds = load_dataset("mnist_idx", split="test[:500]", data_dir=tfds_mnist_dir)
    assert isinstance(ds, ArrayDataset) and ds.name == "mnist_idx"
    assert ds.images.shape == (500, 28, 28, 1) and ds.max_value == 255
    np.testing.assert_array_equal(ds.images[..., 0], read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:500])
    np.testing.assert_array_equal(ds.labels, read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:500])


def test_array_dataset_validation():
    good = np.zeros((4, 2, 2, 1), np.uint8)
    ds = ArrayDataset("a", good, np.arange(4), 255)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "b"
    with pytest.raises(TypeError, match="uint8"):
        ArrayDataset("a", good.astype(np.float32), None, 255)
    with pytest.raises(TypeError, match="numpy array"):
        ArrayDataset("a", good.tolist(), None, 255)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ArrayDataset("a", good[..., 0], None, 255)
    with pytest.raises(ValueError, match="17 > max_value=16"):
        ArrayDataset("a", good + 17, None, 16)
    with pytest.raises(ValueError, match="max_value"):
        ArrayDataset("a", good, None, 0)
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset("a", good, np.arange(3), 255)
    with pytest.raises(TypeError, match="labels"):
        ArrayDataset("a", good, np.zeros(4, np.float32), 255)
    with pytest.raises(TypeError, match="distribution"):
        ToyDataset("t", "ring8")
    with pytest.raises(TypeError, match="name"):
        load_dataset(3)
