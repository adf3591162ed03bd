"""k-means and NDB: Lloyd's fixed point checked in float64 numpy, the per-bin test against scipy's chi-squared
test of the 2 x 2 table (z^2 = chi^2 without continuity correction), and the behaviour on known mixtures."""

import jax
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency

from gendl_jax.metrics import kmeans, ndb


def _blobs(rng, means, n_per, std=0.05):
    return np.concatenate([m + std * rng.normal(size=(n_per, len(m))) for m in means])


def _nearest(x, centres):
    return np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)


def test_kmeans_reaches_a_lloyd_fixed_point():
    rng = np.random.default_rng()
    x = rng.normal(size=(int(rng.integers(300, 600)), 5))
    out = kmeans(x, 8, key=jax.random.PRNGKey(int(rng.integers(1 << 30))))
    assert out["converged"]
    labels, centres = out["labels"], out["centres"]
    np.testing.assert_array_equal(labels, _nearest(x, centres))  # every row at its nearest centre
    for j in range(8):  # every centre the mean of its rows
        np.testing.assert_allclose(centres[j], x[labels == j].mean(0), rtol=1e-12, atol=1e-12)
    assert out["inertia"] == pytest.approx(np.sum((x - centres[labels]) ** 2), rel=1e-12)


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng()
    means = rng.permutation(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]]))
    out = kmeans(_blobs(rng, means, 100), 4, key=jax.random.PRNGKey(int(rng.integers(1 << 30))))
    found = out["centres"][_nearest(means, out["centres"])]
    np.testing.assert_allclose(found, means, atol=0.03)  # k-means++ seeds one centre per blob here


@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_ndb_matches_per_bin_chi_squared_tests(shift):
    rng = np.random.default_rng()
    real = rng.normal(size=(800, 3))
    fake = rng.normal(size=(600, 3)) + shift
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    out = ndb(real, fake, key=key, n_bins=12, alpha=0.05)
    centres = kmeans(real, 12, key=key)["centres"]  # the same seeding key gives the same bins
    real_counts = np.bincount(_nearest(real, centres), minlength=12)
    fake_counts = np.bincount(_nearest(fake, centres), minlength=12)
    want = [
        chi2_contingency([[r, 800 - r], [f, 600 - f]], correction=False)[1] for r, f in zip(real_counts, fake_counts)
    ]
    np.testing.assert_allclose(out["p_values"], want, rtol=1e-9)
    assert out["ndb"] == int(np.sum(np.array(want) < 0.05))
    assert out["ndb_fraction"] == out["ndb"] / 12
    np.testing.assert_allclose(out["real_proportions"], real_counts / 800, rtol=1e-12)
    np.testing.assert_allclose(out["fake_proportions"], fake_counts / 600, rtol=1e-12)
    js = jensenshannon(real_counts / 800, fake_counts / 600) ** 2  # scipy returns the JS distance, base e
    assert out["js_divergence"] == pytest.approx(js, rel=1e-9)


def test_ndb_flags_dropped_and_over_produced_modes():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0], [8.0, 0.0], [8.0, 4.0]])
    real = _blobs(rng, means, 400, std=0.3)
    key = jax.random.PRNGKey(0)
    same = ndb(real, _blobs(rng, means, 400, std=0.3), key=key, n_bins=6)
    assert same["ndb"] <= 1 and same["js_divergence"] < 1e-2
    # The last blob dropped: its bin is empty in the fake set and the others hold 6/5 of their share.
    dropped = ndb(real, _blobs(rng, means[:5], 480, std=0.3), key=key, n_bins=6)
    assert dropped["ndb"] == 6 and dropped["fake_proportions"][int(np.argmin(dropped["fake_proportions"]))] == 0
    assert dropped["js_divergence"] > same["js_divergence"]


def test_ndb_bad_input():
    rng = np.random.default_rng()
    x = rng.normal(size=(50, 3))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="alpha must be a number in \\(0, 1\\)"):
        ndb(x, x, key=key, n_bins=5, alpha=1.5)
    with pytest.raises(ValueError, match="n_bins=60 needs at least as many distinct samples, got 50"):
        ndb(x, x, key=key, n_bins=60)
    with pytest.raises(ValueError, match="n_bins=10 needs at least as many distinct samples, got 3 distinct"):
        kmeans(np.repeat(x[:3], 10, axis=0), 10, key=key)
    with pytest.raises(ValueError, match="same dimension"):
        ndb(x, x[:, :2], key=key, n_bins=5)
    with pytest.raises(ValueError, match="NaN"):
        ndb(x, np.full((10, 3), np.nan), key=key, n_bins=5)
    with pytest.raises(ValueError, match="n_bins must be >= 2"):
        ndb(x, x, key=key, n_bins=1)
