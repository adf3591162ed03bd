"""Learned two-sample measures against closed forms: Bayes accuracy, W1 of shifted Gaussians, and the
adversarial accuracy / divergence of a shifted class-conditional Gaussian model."""

import jax
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit, log_expit
from scipy.stats import norm

from gendl_jax.metrics import adversarial_accuracy, classifier_two_sample, critic_wasserstein


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
    with pytest.raises(ValueError, match=r"fake must have at least 2 samples of dimension >= 1, got shape \(0, 2\)"):
        classifier_two_sample(x, np.zeros((0, 2)), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="leaves no training or no test sample out of the 3 of fake"):
        classifier_two_sample(x, x[:3], jax.random.PRNGKey(0), test_fraction=0.1)


def _two_gaussian_classes(rng, n, mu, shift=0.0):
    """y uniform on {0, 1}, x | y ~ N(mu (2y - 1) + shift, 1): (n, 1) and (n,)."""
    y = rng.integers(0, 2, n)
    return (mu * (2 * y - 1) + shift + rng.normal(size=n))[:, None], y


def test_adversarial_accuracy_and_divergence_of_a_shifted_conditional_model():
    """Real classes N(-mu, 1) and N(mu, 1); the model's are N(delta - mu_g, 1) and N(delta + mu_g, 1), further
    apart and shifted. Logistic regression is then exact: P_r(1|x) = sigmoid(2 mu x), P_g(1|x) =
    sigmoid(2 mu_g (x - delta)); on real test data the first has the Bayes accuracy Phi(mu), the second
    (Phi(mu + delta) + Phi(mu - delta)) / 2, and the adversarial divergence is E_x KL(P_g(.|x) || P_r(.|x)) over
    the real mixture (numerical integration; 0.104 here, against 0.195 for the other direction)."""
    rng = np.random.default_rng()
    mu, mu_g, delta, n = 1.0, 2.0, 0.5, 20000
    fake, fake_y = _two_gaussian_classes(rng, 5 * n, mu_g, delta)  # large training sets: fitted log-odds within ~2%
    real, real_y = _two_gaussian_classes(rng, 5 * n, mu)
    test, test_y = _two_gaussian_classes(rng, n, mu)
    out = adversarial_accuracy(fake, fake_y, real, real_y, test, test_y, jax.random.PRNGKey(0), hidden=(),
                               steps=4000, batch_size=1024, lr=0.1)
    se = np.sqrt(0.25 / n)
    assert out["accuracy_real"] == pytest.approx(norm.cdf(mu), abs=4 * se + 0.005)
    assert out["accuracy_fake"] == pytest.approx((norm.cdf(mu + delta) + norm.cdf(mu - delta)) / 2, abs=4 * se + 0.005)

    def kl(x):
        a, b = 2 * mu_g * (x - delta), 2 * mu * x  # log-odds of P_g and P_r
        return expit(a) * (log_expit(a) - log_expit(b)) + expit(-a) * (log_expit(-a) - log_expit(-b))

    density = lambda x: 0.5 * (norm.pdf(x, -mu) + norm.pdf(x, mu))  # noqa: E731
    expected = quad(lambda x: kl(x) * density(x), -12, 12)[0]
    assert out["adversarial_divergence"] == pytest.approx(expected, rel=0.1)
    assert out["n_test"] == n


def test_adversarial_accuracy_of_the_real_data_itself_and_of_swapped_labels():
    rng = np.random.default_rng()
    real, real_y = _two_gaussian_classes(rng, 4000, 1.5)
    test, test_y = _two_gaussian_classes(rng, 4000, 1.5)
    same = adversarial_accuracy(real, real_y, real, real_y, test, test_y, jax.random.PRNGKey(1), steps=300)
    assert same["accuracy_fake"] == same["accuracy_real"] and same["adversarial_divergence"] == 0.0
    swapped = adversarial_accuracy(real, 1 - real_y, real, real_y, test, test_y, jax.random.PRNGKey(1), steps=600,
                                   hidden=(), lr=1e-2)
    se = np.sqrt(0.25 / 4000)
    assert swapped["accuracy_fake"] == pytest.approx(1 - norm.cdf(1.5), abs=4 * se + 0.005)
    assert swapped["accuracy_real"] == pytest.approx(norm.cdf(1.5), abs=4 * se + 0.005)
    assert swapped["adversarial_divergence"] > 1.0


def test_adversarial_accuracy_bad_input():
    x, y = np.zeros((10, 3)), np.zeros(10, int)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"fake_labels must be \(10,\) ints, one per row of fake, got shape \(9,\)"):
        adversarial_accuracy(x, y[:9], x, y, x, y, key)
    with pytest.raises(ValueError, match=r"test_labels must lie in \[0, num_classes=2\), got \[0, 2\]"):
        adversarial_accuracy(x, y, x, y, x, np.r_[y[:9], 2], key, num_classes=2)
    with pytest.raises(ValueError, match=r"real_labels must be \(10,\) ints.*dtype float64"):
        adversarial_accuracy(x, y, x, y.astype(float), x, y, key)
    with pytest.raises(ValueError, match="fake and real must have the same dimension, got 3 and 2"):
        adversarial_accuracy(x, y, x[:, :2], y, x, y, key)
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        adversarial_accuracy(x, y, x, y, x, y, key)
