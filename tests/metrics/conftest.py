"""The MNIST IDX directory for the classifier tests: $GENDL_DATA_DIR, else <repo>/../shared/data/mnist
(the rule of tests/data; missing data fails the tests, it does not skip them)."""

import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    env = os.environ.get("GENDL_DATA_DIR")
    path = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
    assert path.resolve().is_dir(), f"MNIST directory {path} not found: set GENDL_DATA_DIR"
    return path.resolve()
