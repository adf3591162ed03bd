"""Fixtures shared by the whole suite: the MNIST IDX directory ($GENDL_DATA_DIR, or <repo>/../shared/data/mnist).
Missing data fails the tests that need it; they do not skip."""

import importlib.util
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def mnist_idx_dir() -> pathlib.Path:
    """The folder holding the IDX files: $GENDL_DATA_DIR (or its mnist/) if set, else <repo>/../shared/data/mnist."""
    env = os.environ.get("GENDL_DATA_DIR")
    path = (pathlib.Path(env) if env else REPO_ROOT / ".." / "shared" / "data" / "mnist").resolve()
    assert path.is_dir(), f"MNIST directory {path} not found: set GENDL_DATA_DIR or provide ../shared/data/mnist"
    if not (path / "train-images-idx3-ubyte.gz").is_file() and (path / "mnist").is_dir():
        path = path / "mnist"  # GENDL_DATA_DIR may name the parent of mnist/
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    return mnist_idx_dir()


def load_experiment(name: str):
    """``experiments/<name>.py`` imported as a module (the experiment scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_experiment", REPO_ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def experiment():
    """:func:`load_experiment`: ``experiment("gan_theory")`` is the script ``experiments/gan_theory.py``."""
    return load_experiment
