"""Kernel two-sample measures: KID (Binkowski et al. 2018) and MMD (Gretton et al. 2012).

Both use the unbiased estimator of the squared maximum mean discrepancy,
``MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
- 2 sum_{i, j} k(x_i, y_j) / (n m)``, which can be slightly negative when the distributions match.
Float64 throughout; :func:`mmd` sums its kernel matrices in blocks (memory O(block_size^2)).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gendl_jax.metrics.common import DEFAULT_BLOCK_SIZE, as_samples, positive_int, same_dim, x64
from gendl_jax.metrics.pairwise import row_blocks, sq_dists

KERNELS = ("gaussian", "laplacian", "polynomial")
"""gaussian: sum_s exp(-|x - y|^2 / (2 s^2)); laplacian: sum_s exp(-|x - y| / s);
polynomial: (x.y / d + 1)^3 (KID's kernel; no bandwidth)."""


def _kernel_matrix(kernel: str, a: jax.Array, b: jax.Array, bandwidths: jax.Array) -> jax.Array:
    if kernel == "polynomial":
        return (a @ b.T / a.shape[1] + 1.0) ** 3
    d2 = sq_dists(a, b)[..., None]
    if kernel == "gaussian":
        return jnp.sum(jnp.exp(-d2 / (2.0 * bandwidths**2)), axis=-1)
    return jnp.sum(jnp.exp(-jnp.sqrt(d2) / bandwidths), axis=-1)


@functools.partial(jax.jit, static_argnames=("kernel", "exclude_diagonal", "block"))
def _kernel_sum(x, y, bandwidths, kernel: str, exclude_diagonal: bool, block: int) -> jax.Array:
    """sum_{i, j} k(x_i, y_j) (over i != j if ``exclude_diagonal``), in blocks."""
    xb, xv, xi = row_blocks(x, min(block, x.shape[0]))
    yb, yv, yi = row_blocks(y, min(block, y.shape[0]))

    def row_block(args):
        a, av, ai = args

        def scan_cols(total, col):
            b, bv, bi = col
            keep = av[:, None] & bv[None, :]
            if exclude_diagonal:
                keep = keep & (ai[:, None] != bi[None, :])
            return total + jnp.sum(jnp.where(keep, _kernel_matrix(kernel, a, b, bandwidths), 0.0)), None

        total, _ = lax.scan(scan_cols, jnp.zeros((), x.dtype), (yb, yv, yi))
        return total

    return jnp.sum(lax.map(row_block, (xb, xv, xi)))


def _mmd2_unbiased(x, y, bandwidths, kernel: str, block: int) -> jax.Array:
    n, m = x.shape[0], y.shape[0]
    sxx = _kernel_sum(x, x, bandwidths, kernel, True, block)
    syy = _kernel_sum(y, y, bandwidths, kernel, True, block)
    sxy = _kernel_sum(x, y, bandwidths, kernel, False, block)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def median_heuristic(x: np.ndarray, y: np.ndarray, max_points: int = 1000) -> float:
    """Median pairwise Euclidean distance among the pooled samples (the first ``max_points`` of each)."""
    z = np.concatenate([x[:max_points], y[:max_points]])
    with jax.enable_x64(True):
        d = np.sqrt(np.asarray(sq_dists(jnp.asarray(z), jnp.asarray(z))))
    return float(np.median(d[np.triu_indices(len(z), 1)]))


@x64
def mmd(x, y, *, kernel: str = "gaussian", bandwidth=None, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Unbiased estimate of the squared MMD between samples ``x`` (n, d) and ``y`` (m, d).

    Args:
      kernel: one of :data:`KERNELS`.
      bandwidth: a positive float, or a sequence of them for a multi-bandwidth kernel (the sum
        of the kernels); None: the median heuristic (:func:`median_heuristic`). Ignored (must be
        None) for the polynomial kernel.
    """
    x, y = as_samples(x, "x", min_n=2), as_samples(y, "y", min_n=2)
    same_dim(x, y, "x", "y")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "polynomial":
        if bandwidth is not None:
            raise ValueError("bandwidth must be None for the polynomial kernel")
        bandwidths = np.ones(1)
    else:
        if bandwidth is None:
            bandwidth = median_heuristic(x, y)
        bandwidths = np.atleast_1d(np.asarray(bandwidth, np.float64))
        if bandwidths.ndim != 1 or bandwidths.size == 0 or not np.all(np.isfinite(bandwidths) & (bandwidths > 0)):
            raise ValueError(f"bandwidth must be a positive float or a non-empty sequence of them, got {bandwidth!r}")
    block = positive_int(block_size, "block_size")
    return float(_mmd2_unbiased(jnp.asarray(x), jnp.asarray(y), jnp.asarray(bandwidths), kernel, block))


@functools.partial(jax.jit, static_argnames=("n_real", "n_fake", "n_subsets", "subset_size"))
def _subset_indices(key, n_real: int, n_fake: int, n_subsets: int, subset_size: int):
    def draw(k):
        kr, kf = jax.random.split(k)
        return (
            jax.random.choice(kr, n_real, (subset_size,), replace=False),
            jax.random.choice(kf, n_fake, (subset_size,), replace=False),
        )

    return lax.map(draw, jax.random.split(key, n_subsets))


def kid_subset_indices(key, n_real: int, n_fake: int, n_subsets: int, subset_size: int):
    """The subsets :func:`kid` draws: ``(real_idx, fake_idx)``, each (n_subsets, subset_size), without
    replacement within a subset, independently across subsets."""
    return tuple(np.asarray(a) for a in _subset_indices(key, n_real, n_fake, n_subsets, subset_size))


@jax.jit
def _kid_scores(real, fake, real_idx, fake_idx):
    def one(idx):
        x, y = real[idx[0]], fake[idx[1]]
        m = x.shape[0]
        kxx = _kernel_matrix("polynomial", x, x, None)
        kyy = _kernel_matrix("polynomial", y, y, None)
        kxy = _kernel_matrix("polynomial", x, y, None)
        off = lambda k: jnp.sum(k) - jnp.trace(k)
        return (off(kxx) + off(kyy)) / (m * (m - 1)) - 2.0 * jnp.sum(kxy) / (m * m)

    return lax.map(one, (real_idx, fake_idx))


def numpy_kid_subset_indices(seed: int, n_real: int, n_fake: int, n_subsets: int, subset_size: int):
    """torch-fidelity's KID subsets: ``(real_idx, fake_idx)``, each (n_subsets, subset_size).

    One ``numpy.random.RandomState(seed)`` draws, for each subset in turn, ``choice(n_fake, subset_size,
    replace=False)`` then ``choice(n_real, subset_size, replace=False)``: torch-fidelity's order with its first input
    (``input1``, the generated samples) as ``fake`` and its second as ``real``; its default seed is 2020.
    """
    rs = np.random.RandomState(seed)
    real_idx = np.empty((n_subsets, subset_size), np.int64)
    fake_idx = np.empty((n_subsets, subset_size), np.int64)
    for i in range(n_subsets):
        fake_idx[i] = rs.choice(n_fake, subset_size, replace=False)
        real_idx[i] = rs.choice(n_real, subset_size, replace=False)
    return real_idx, fake_idx


@x64
def kid(
    features_real,
    features_fake,
    *,
    key=None,
    seed: int | None = None,
    n_subsets: int = 100,
    subset_size: int = 1000,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 on random subsets.

    Args:
      features_real: (n, d); features_fake: (m, d); both n and m must be >= ``subset_size``.
      key: PRNG key for the subsets (see :func:`kid_subset_indices`); or
      seed: an int instead of ``key``: the subsets torch-fidelity draws with this seed (its default is 2020; see
        :func:`numpy_kid_subset_indices`), so that the same features give torch-fidelity's KID.
    Returns:
      ``(mean, std)`` over the ``n_subsets`` subsets (std with ddof 0).
    """
    if (key is None) == (seed is None):
        raise ValueError("pass exactly one of key (a jax PRNG key) or seed (an int, torch-fidelity's subsets)")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    real = as_samples(features_real, "features_real", min_n=2)
    fake = as_samples(features_fake, "features_fake", min_n=2)
    same_dim(real, fake, "features_real", "features_fake")
    n_subsets = positive_int(n_subsets, "n_subsets")
    subset_size = positive_int(subset_size, "subset_size", 2)
    if subset_size > min(len(real), len(fake)):
        raise ValueError(
            f"subset_size={subset_size} exceeds the number of samples (features_real: {len(real)}, "
            f"features_fake: {len(fake)}); pass a smaller subset_size or more samples"
        )
    if seed is not None:
        real_idx, fake_idx = numpy_kid_subset_indices(int(seed), len(real), len(fake), n_subsets, subset_size)
    else:
        real_idx, fake_idx = _subset_indices(key, len(real), len(fake), n_subsets, subset_size)
    scores = np.asarray(_kid_scores(jnp.asarray(real), jnp.asarray(fake), real_idx, fake_idx))
    return float(scores.mean()), float(scores.std())
