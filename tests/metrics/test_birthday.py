"""Birthday paradox test: the duplicate probability of a uniform distribution on N points against the closed form
1 - prod_{i<s}(1 - i/N), the closest pair against a brute-force numpy search, and the support estimate."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from gendl_jax.metrics import birthday_duplicates, birthday_support_size


def _uniform_on_points(rng, n_points, n_samples, dim=3):
    points = rng.normal(size=(n_points, dim))
    return points[rng.integers(0, n_points, n_samples)]


def _closed_form(n_points, s):
    return 1.0 - np.prod(1.0 - np.arange(s) / n_points)


@pytest.mark.parametrize("s", [10, 25, 40])
def test_duplicate_probability_of_a_discrete_uniform_distribution(s):
    rng = np.random.default_rng(s)  # seeded: a Monte Carlo estimate compared within 4 standard errors
    samples = _uniform_on_points(rng, 500, 20000)
    out = birthday_duplicates(samples, s, threshold=1e-9, n_batches=2000, seed=s)
    p = _closed_form(500, s)
    assert out["duplicate_probability"] == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 2000))


def test_closest_pairs_match_brute_force():
    rng = np.random.default_rng()
    samples = rng.normal(size=(300, 2, 3))  # any shape: rows are flattened
    out = birthday_duplicates(samples, 40, threshold=0.05, n_batches=5, seed=int(rng.integers(1000)), block_size=16)
    flat = samples.reshape(300, -1)
    for dist, (i, j) in zip(out["closest_distances"], out["closest_pairs"]):
        assert i != j and dist == pytest.approx(np.linalg.norm(flat[i] - flat[j]), rel=1e-9)
    # Each batch's closest pair is the minimum over that batch: recompute for one batch with the same rng.
    rows = np.random.default_rng(7).choice(300, 40, replace=False)
    first = birthday_duplicates(samples, 40, threshold=0.05, n_batches=1, seed=7)
    assert first["closest_distances"][0] == pytest.approx(np.min(pdist(flat[rows])), rel=1e-9)
    d = squareform(pdist(flat[rows])) + np.diag(np.full(40, np.inf))
    assert set(first["closest_pairs"][0]) == set(rows[list(np.unravel_index(np.argmin(d), d.shape))])
    assert out["duplicate_probability"] == np.mean(out["closest_distances"] <= 0.05)


def test_support_size_bounds_a_uniform_support():
    rng = np.random.default_rng(1)
    samples = _uniform_on_points(rng, 400, 20000)
    out = birthday_support_size(samples, [48, 8, 16, 32], threshold=1e-9, n_batches=400, seed=1)
    # P(duplicate) crosses 1/2 near s = sqrt(2 ln 2 * 400) = 23.5 (closed form 0.26 at 16, 0.72 at 32): the first
    # size past it is 32, and 32^2 = 1024 >= 400 = N.
    assert out["batch_size_at_half"] == 32 and out["support_size"] == 1024
    assert list(out["probabilities"]) == [8, 16, 32, 48]
    for s, p in out["probabilities"].items():
        assert p == pytest.approx(_closed_form(400, s), abs=4 * np.sqrt(0.25 / 400))
    continuous = birthday_support_size(rng.normal(size=(5000, 3)), [16, 64], threshold=1e-9, n_batches=50)
    assert continuous["batch_size_at_half"] is None and continuous["support_size"] is None


def test_birthday_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="batch_size=11 exceeds the 10 samples"):
        birthday_duplicates(x, 11, threshold=0.1)
    with pytest.raises(ValueError, match="threshold must be a finite distance >= 0"):
        birthday_duplicates(x, 5, threshold=-1.0)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        birthday_duplicates(x, 1, threshold=0.1)
    with pytest.raises(ValueError, match="at least one size"):
        birthday_support_size(x, [], threshold=0.1)
