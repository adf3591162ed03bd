"""Fixtures for the data tests: the MNIST IDX directory and a prepared mnist_idx TFDS dir."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]  # tests/data/conftest.py -> repo root


def mnist_idx_dir() -> pathlib.Path:
    """The folder holding the IDX files: $GENDL_DATA_DIR (or its mnist/) if set, else
    <repo>/../shared/data/mnist. Missing -> the tests fail (they do not skip)."""
    env = os.environ.get("GENDL_DATA_DIR")
    path = pathlib.Path(env) if env else REPO_ROOT / ".." / "shared" / "data" / "mnist"
    path = path.resolve()
    assert path.is_dir(), (
        f"MNIST directory {path} not found: set GENDL_DATA_DIR or provide ../shared/data/mnist"
    )
    if not (path / "train-images-idx3-ubyte.gz").is_file() and (path / "mnist").is_dir():
        path = path / "mnist"  # GENDL_DATA_DIR may name the parent of mnist/
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    return mnist_idx_dir()


@pytest.fixture(scope="session")
def tfds_mnist_dir(tmp_path_factory, mnist_dir) -> pathlib.Path:
    """A TFDS data dir with mnist_idx (both splits, array_record) built once per session."""
    from gendl_jax.data import prepare_mnist_tfds

    out = tmp_path_factory.mktemp("tfds")
    prepare_mnist_tfds(out, idx_dir=mnist_dir)
    return out
