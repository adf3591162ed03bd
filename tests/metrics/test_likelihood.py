"""Parzen-window log-likelihood against scipy (logsumexp, multivariate_normal); the KDE coverage metric against
a numpy version and the closed form of a Gaussian model."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import chi2, multivariate_normal

from gendl_jax.metrics import mass_coverage, parzen_log_densities, parzen_log_likelihood, select_parzen_bandwidth


def _reference(test, samples, sigma):
    d = test.shape[1]
    return (
        logsumexp(-cdist(test, samples, "sqeuclidean") / (2 * sigma**2), axis=1)
        - np.log(len(samples))
        - d / 2 * np.log(2 * np.pi * sigma**2)
    )


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


def test_mass_coverage_matches_numpy():
    rng = np.random.default_rng()
    real, fake = rng.normal(size=(70, 3)), rng.normal(size=(int(rng.integers(100, 160)), 3)) * 1.2 + 0.3
    sigma, mass = rng.uniform(0.2, 0.8), rng.uniform(0.8, 0.99)
    fit, held = fake[: len(fake) // 2], fake[len(fake) // 2 :]
    threshold = np.quantile(_reference(held, fit, sigma), 1 - mass)
    out = mass_coverage(real, fake, bandwidth=sigma, mass=mass)
    assert out["threshold_log_density"] == pytest.approx(threshold, rel=1e-10)
    assert out["coverage"] == np.mean(_reference(real, fit, sigma) > threshold) and out["bandwidth"] == sigma
    # Without a bandwidth: the one select_parzen_bandwidth picks for the first half on the second.
    best, _ = select_parzen_bandwidth(held, fit)
    assert mass_coverage(real, fake, mass=mass)["bandwidth"] == best


def test_mass_coverage_of_a_gaussian_model_follows_the_chi_squared_law():
    # Model N(0, I_2): {p > t} holding 95% of its mass is the disc |x|^2 <= chi2_2.ppf(0.95); real data
    # N(0, s^2 I) puts chi2_2.cdf(ppf / s^2) in it. The KDE of 4,000 samples approximates both.
    rng = np.random.default_rng(0)
    fake = rng.normal(size=(8000, 2))
    radius2 = chi2(2).ppf(0.95)
    for scale in (1.0, 1.5):
        real = scale * rng.normal(size=(4000, 2))
        out = mass_coverage(real, fake, mass=0.95)
        assert out["coverage"] == pytest.approx(chi2(2).cdf(radius2 / scale**2), abs=0.02)
    shifted = mass_coverage(rng.normal(size=(2000, 2)) + 4.0, fake)  # data where the model has no mass
    assert shifted["coverage"] < 0.01


def test_mass_coverage_bad_input():
    x = np.random.default_rng().normal(size=(20, 2))
    with pytest.raises(ValueError, match="mass must be a number in \\(0, 1\\)"):
        mass_coverage(x, x, mass=1.0)
    with pytest.raises(ValueError, match="fake must have at least 4 samples"):
        mass_coverage(x, x[:3])
    with pytest.raises(ValueError, match="bandwidth must be a positive finite float"):
        mass_coverage(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="same dimension"):
        mass_coverage(x, x[:, :1])
