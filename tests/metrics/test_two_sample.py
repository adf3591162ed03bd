"""Learned two-sample measures against closed forms: Bayes accuracy and W1 of shifted Gaussians."""

import jax
import numpy as np
import pytest
from scipy.stats import norm

from gendl_jax.metrics import classifier_two_sample, critic_wasserstein


def test_classifier_two_sample_reaches_bayes_accuracy():
    rng = np.random.default_rng(0)
    delta = 1.5  # N(0, I) vs N(delta e1, I): Bayes accuracy Phi(delta / 2)
    real = rng.normal(size=(2000, 2))
    fake = rng.normal(size=(2000, 2)) + [delta, 0.0]
    out = classifier_two_sample(real, fake, jax.random.PRNGKey(1), steps=400)
    bayes = norm.cdf(delta / 2)
    sd = np.sqrt(bayes * (1 - bayes) / out["n_test"])
    assert bayes - 4 * sd - 0.02 < out["accuracy"] <= bayes + 4 * sd
    assert out["p_value"] < 1e-6


def test_classifier_two_sample_same_distribution():
    rng = np.random.default_rng(1)
    out = classifier_two_sample(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)), jax.random.PRNGKey(2),
                                steps=300)
    assert abs(out["accuracy"] - 0.5) < 4 * np.sqrt(0.25 / out["n_test"])


def test_critic_wasserstein_of_a_translation():
    rng = np.random.default_rng(2)
    shift = np.array([1.5, 0.0])  # W1(P, P + shift) = |shift| exactly
    real = rng.normal(size=(2000, 2))
    fake = rng.normal(size=(2000, 2)) + shift
    out = critic_wasserstein(real, fake, jax.random.PRNGKey(3), hidden=(64, 64), steps=600)
    assert out["w1"] == pytest.approx(1.5, rel=0.1)


def test_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="test_fraction"):
        classifier_two_sample(x, x, jax.random.PRNGKey(0), test_fraction=1.0)
    with pytest.raises(ValueError, match="gp_weight"):
        critic_wasserstein(x, x, jax.random.PRNGKey(0), gp_weight=0.0)
