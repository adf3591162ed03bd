"""KID and MMD against direct O(n^2) float64 loops."""

import jax
import numpy as np
import pytest

from gendl_jax.metrics import kid, kid_subset_indices, mmd


def _poly(a, b):
    return (a @ b / len(a) + 1.0) ** 3


def _mmd2_loop(x, y, k):
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


def test_kid_matches_loop_on_the_same_subsets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 5))
    fake = rng.normal(size=(50, 5)) * 1.2 + 0.3
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    ri, fi = kid_subset_indices(key, 60, 50, 3, 25)
    assert ri.shape == fi.shape == (3, 25)
    assert all(len(set(row)) == 25 for row in ri)  # without replacement
    scores = [_mmd2_loop(real[a], fake[b], _poly) for a, b in zip(ri, fi)]
    mean, std = kid(real.astype(np.float32), fake.astype(np.float32), key=key, n_subsets=3, subset_size=25)
    np.testing.assert_allclose([mean, std], [np.mean(scores), np.std(scores)], rtol=1e-6)


def test_kid_full_subset_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 1
    mean, std = kid(x, y, key=jax.random.PRNGKey(0), n_subsets=2, subset_size=30)
    np.testing.assert_allclose(mean, _mmd2_loop(x, y, _poly), rtol=1e-10)
    assert std < 1e-10 * abs(mean)  # every subset is the whole set
    np.testing.assert_allclose(mmd(x, y, kernel="polynomial"), mean, rtol=1e-10)


def test_kid_identical_sets_near_zero():
    x = np.random.default_rng(2).normal(size=(2000, 16))
    same, _ = kid(x, x, key=jax.random.PRNGKey(0), n_subsets=10, subset_size=1000)
    shifted, _ = kid(x, x + 0.5, key=jax.random.PRNGKey(0), n_subsets=10, subset_size=1000)
    assert abs(same) < 0.02 * shifted


@pytest.mark.parametrize(
    "kernel,bandwidth", [("gaussian", 1.3), ("gaussian", (0.5, 1.0, 4.0)), ("laplacian", 2.0), ("polynomial", None)]
)
def test_mmd_matches_loop_and_blocks_agree(kernel, bandwidth):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(37, 3)), rng.normal(size=(23, 3)) * 0.8 + 0.4
    bws = np.atleast_1d(bandwidth) if bandwidth is not None else None
    if kernel == "gaussian":
        k = lambda a, b: sum(np.exp(-np.sum((a - b) ** 2) / (2 * s**2)) for s in bws)
    elif kernel == "laplacian":
        k = lambda a, b: sum(np.exp(-np.sqrt(np.sum((a - b) ** 2)) / s) for s in bws)
    else:
        k = _poly
    ref = _mmd2_loop(x, y, k)
    np.testing.assert_allclose(mmd(x, y, kernel=kernel, bandwidth=bandwidth), ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mmd(x, y, kernel=kernel, bandwidth=bandwidth, block_size=8), ref, rtol=1e-9, atol=1e-12)


def test_mmd_median_heuristic():
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    sigma = np.median(pdist(np.concatenate([x, y])))
    np.testing.assert_allclose(mmd(x, y), mmd(x, y, bandwidth=sigma), rtol=1e-9)


def test_bad_input():
    x = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="subset_size=50 exceeds"):
        kid(x, x, key=jax.random.PRNGKey(0), n_subsets=2, subset_size=50)
    with pytest.raises(ValueError, match="kernel must be one of"):
        mmd(x, x, kernel="rbf")
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        mmd(x, np.full((5, 3), np.nan))
