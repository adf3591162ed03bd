"""Input checks and the float64 convention shared by the metrics.

Precision: every measure here computes in float64. Inputs are checked and converted to float64
numpy arrays on the host (concrete values, before tracing), then the jitted kernels run inside
``jax.enable_x64(True)``, so they stay on the accelerator in double precision whatever the
global ``jax_enable_x64`` setting is.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import numpy as np

DEFAULT_BLOCK_SIZE = 1024
"""Rows / columns per block of the pairwise-distance kernels: a block holds 1024 x 1024 float64 (8 MB)."""


def x64(fn):
    """Runs ``fn`` with 64-bit types enabled (jitted calls inside compile in float64)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped


def as_samples(x, name: str, *, min_n: int = 1) -> np.ndarray:
    """``x`` as a finite float64 (n, d) array with n >= ``min_n``; clear errors otherwise."""
    try:
        arr = np.asarray(x)
    except Exception as e:
        raise TypeError(f"{name} must be an array of shape (n, d), got {type(x).__name__}") from e
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {arr.shape}")
    if arr.shape[0] < min_n or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least {min_n} samples of dimension >= 1, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=1)))
        raise ValueError(f"{name} contains NaN or inf (in {bad} of {arr.shape[0]} rows)")
    return arr


def same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{name_a} and {name_b} must have the same dimension, got {a.shape[1]} and {b.shape[1]}")


def positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_k(k, n: int, name: str, *, exclude_self: bool, arg: str = "k") -> int:
    """k (the argument ``arg``) for a k-nearest-neighbour search among the n points of ``name`` (n - 1 others
    when excluding self)."""
    k = positive_int(k, arg)
    available = n - 1 if exclude_self else n
    if k > available:
        raise ValueError(
            f"{arg}={k} needs more samples: {name} has {n} samples, so at most k={available} neighbours"
            + (" (excluding the point itself)" if exclude_self else "")
        )
    return k


def flatten_samples(x, name: str) -> np.ndarray:
    """``x`` (n, ...) as (n, prod(...)), e.g. images (n, 28, 28, 1) -> (n, 784); an empty set stays (0, d)."""
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have shape (n, ...) with at least 2 axes, got {arr.shape}")
    return arr.reshape(arr.shape[0], math.prod(arr.shape[1:]))


def split_indices(key: jax.Array, n: int, test_fraction: float, name: str = "the samples"):
    """A random split of ``range(n)`` into (train rows, test rows), ``round(n * test_fraction)`` of them test."""
    n_test = round(n * test_fraction)
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_fraction={test_fraction} leaves no training or no test sample out of the {n} of {name}")
    perm = np.asarray(jax.random.permutation(key, n))
    return perm[n_test:], perm[:n_test]
