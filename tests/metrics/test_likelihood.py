"""Parzen-window log-likelihood against scipy (logsumexp, multivariate_normal)."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gendl_jax.metrics import parzen_log_densities, parzen_log_likelihood, select_parzen_bandwidth


def _reference(test, samples, sigma):
    d = test.shape[1]
    return (logsumexp(-cdist(test, samples, "sqeuclidean") / (2 * sigma**2), axis=1)
            - np.log(len(samples)) - d / 2 * np.log(2 * np.pi * sigma**2))


@pytest.mark.parametrize("seed", range(2))
def test_matches_logsumexp_reference_blocked(seed):
    rng = np.random.default_rng(seed)
    test, samples = rng.normal(size=(45, 6)), rng.normal(size=(130, 6)) * 1.1
    sigma = rng.uniform(0.05, 1.0)  # small sigma: log-densities far below exp's range
    ref = _reference(test, samples, sigma)
    np.testing.assert_allclose(parzen_log_densities(test, samples, sigma, block_size=16), ref, rtol=1e-10)
    mean, sem = parzen_log_likelihood(test, samples, sigma)
    np.testing.assert_allclose([mean, sem], [ref.mean(), ref.std(ddof=1) / np.sqrt(45)], rtol=1e-10)


def test_one_sample_is_a_gaussian_density():
    rng = np.random.default_rng(3)
    s, x = rng.normal(size=(1, 3)), rng.normal(size=(10, 3))
    expected = multivariate_normal(s[0], 0.7**2 * np.eye(3)).logpdf(x)
    np.testing.assert_allclose(parzen_log_densities(x, s, 0.7), expected, rtol=1e-12)


def test_bandwidth_selection_picks_the_best_candidate():
    rng = np.random.default_rng(4)
    samples, validation = rng.normal(size=(300, 2)), rng.normal(size=(100, 2))
    candidates = [0.01, 0.1, 0.3, 1.0, 5.0]
    best, scores = select_parzen_bandwidth(validation, samples, candidates)
    ref = {c: _reference(validation, samples, c).mean() for c in candidates}
    assert best == max(ref, key=ref.get)
    np.testing.assert_allclose([scores[c] for c in candidates], [ref[c] for c in candidates], rtol=1e-10)


def test_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        parzen_log_likelihood(x, x, 0.0)
    with pytest.raises(ValueError, match="same dimension"):
        parzen_log_likelihood(x, np.zeros((4, 3)), 1.0)
