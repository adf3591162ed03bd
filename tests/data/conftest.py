"""Fixtures for the data tests: a prepared mnist_idx TFDS dir (``mnist_dir`` is in tests/conftest.py)."""

import pathlib

import pytest


@pytest.fixture(scope="session")
def tfds_mnist_dir(tmp_path_factory, mnist_dir) -> pathlib.Path:
    """A TFDS data dir with mnist_idx (both splits, array_record) built once per session."""
    from gendl_jax.data import prepare_mnist_tfds

    out = tmp_path_factory.mktemp("tfds")
    prepare_mnist_tfds(out, idx_dir=mnist_dir)
    return out
