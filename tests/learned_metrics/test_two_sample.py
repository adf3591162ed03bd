"""Learned two-sample measures against closed forms: Bayes accuracy, W1 of shifted Gaussians, and the
adversarial accuracy / divergence of a shifted class-conditional Gaussian model; the GAN Quality Index and the linear
probe against those closed forms and against the same pipelines built from scikit-learn's logistic regression."""

import jax
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import expit, log_expit
from scipy.stats import norm

from gendl_jax.learned_metrics import (
    adversarial_accuracy,
    classifier_two_sample,
    critic_wasserstein,
    gan_quality_index,
    linear_probe,
)


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
    out = classifier_two_sample(
        rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)), jax.random.PRNGKey(2), steps=300
    )
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
    out = adversarial_accuracy(
        fake, fake_y, real, real_y, test, test_y, jax.random.PRNGKey(0), hidden=(), steps=4000, batch_size=1024, lr=0.1
    )
    se = np.sqrt(0.25 / n)
    assert out["accuracy_real"] == pytest.approx(norm.cdf(mu), abs=4 * se + 0.005)
    assert out["accuracy_fake"] == pytest.approx((norm.cdf(mu + delta) + norm.cdf(mu - delta)) / 2, abs=4 * se + 0.005)

    def kl(x):
        a, b = 2 * mu_g * (x - delta), 2 * mu * x  # log-odds of P_g and P_r
        return expit(a) * (log_expit(a) - log_expit(b)) + expit(-a) * (log_expit(-a) - log_expit(-b))

    density = lambda x: 0.5 * (norm.pdf(x, -mu) + norm.pdf(x, mu))
    expected = quad(lambda x: kl(x) * density(x), -12, 12)[0]
    assert out["adversarial_divergence"] == pytest.approx(expected, rel=0.1)
    assert out["n_test"] == n


def test_adversarial_accuracy_of_the_real_data_itself_and_of_swapped_labels():
    rng = np.random.default_rng()
    real, real_y = _two_gaussian_classes(rng, 4000, 1.5)
    test, test_y = _two_gaussian_classes(rng, 4000, 1.5)
    same = adversarial_accuracy(real, real_y, real, real_y, test, test_y, jax.random.PRNGKey(1), steps=300)
    assert same["accuracy_fake"] == same["accuracy_real"] and same["adversarial_divergence"] == 0.0
    swapped = adversarial_accuracy(
        real, 1 - real_y, real, real_y, test, test_y, jax.random.PRNGKey(1), steps=600, hidden=(), lr=1e-2
    )
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


def test_gan_quality_index_of_samples_that_straddle_the_boundary():
    """Real classes N(-1, 1) and N(1, 1); the samples are uniform on [-3, 3], nothing like the data, yet C_real
    labels them by the sign of x (its boundary is near 0) and they lie densely on both sides of it, so C_gan learns
    the same threshold: both reach the Bayes accuracy Phi(1) and GQI ~ 100. (The GQI scores the class layout the
    samples convey, not their density.)"""
    rng = np.random.default_rng()
    real, real_y = _two_gaussian_classes(rng, 20000, 1.0)
    test, test_y = _two_gaussian_classes(rng, 20000, 1.0)
    fake = rng.uniform(-3, 3, size=(20000, 1))
    out = gan_quality_index(
        fake, real, real_y, test, test_y, jax.random.PRNGKey(0), hidden=(), steps=2000, batch_size=512, lr=0.05
    )
    se = np.sqrt(0.25 / len(test))
    assert out["accuracy_real"] == pytest.approx(norm.cdf(1.0), abs=4 * se + 0.005)
    assert out["accuracy_gan"] == pytest.approx(norm.cdf(1.0), abs=4 * se + 0.005)
    assert out["gqi"] == pytest.approx(100.0, abs=1.5)
    # The induced labels are C_real's argmax: the sign of x up to its boundary's estimation error (< 0.05 here).
    near = int(np.sum(np.abs(fake[:, 0]) < 0.05))
    assert abs(out["induced_label_counts"][1] - int(np.sum(fake[:, 0] > 0))) <= near
    assert sum(out["induced_label_counts"]) == len(fake) and out["n_test"] == len(test)


def _sklearn_gqi(fake, real, real_y, test, test_y):
    from sklearn.linear_model import LogisticRegression

    c_real = LogisticRegression(C=1e4, max_iter=2000).fit(real, real_y)
    c_gan = LogisticRegression(C=1e4, max_iter=2000).fit(fake, c_real.predict(fake))
    acc_real, acc_gan = c_real.score(test, test_y), c_gan.score(test, test_y)
    return 100 * acc_gan / acc_real, acc_gan, acc_real


def _three_classes(rng, n, classes=3, std=1.0, shift=(0.0, 0.0)):
    """Three Gaussian classes in 2-D, centres on a circle of radius 2: x (n, 2) and y (n,) (the first ``classes``)."""
    centres = 2.0 * np.array([[1.0, 0.0], [-0.5, 0.866], [-0.5, -0.866]])
    y = rng.integers(0, classes, n)
    return centres[y] + std * rng.normal(size=(n, 2)) + np.asarray(shift), y


def test_gan_quality_index_of_a_shifted_model_matches_scikit_learn():
    """The model's samples are the classes squeezed and shifted; they still straddle every boundary of C_real.
    Our pipeline (multinomial logistic regression, ``hidden=()``) against the same one built from scikit-learn's
    (nearly unregularised) LogisticRegression, where both fits are well determined."""
    rng = np.random.default_rng()
    (real, real_y), (test, test_y) = _three_classes(rng, 20000), _three_classes(rng, 20000)
    fake, _ = _three_classes(rng, 20000, std=0.7, shift=(0.8, 0.4))
    out = gan_quality_index(
        fake, real, real_y, test, test_y, jax.random.PRNGKey(1), hidden=(), steps=3000, batch_size=512, lr=0.05
    )
    gqi, acc_gan, acc_real = _sklearn_gqi(fake, real, real_y, test, test_y)
    assert out["accuracy_real"] == pytest.approx(acc_real, abs=0.005)
    assert out["accuracy_gan"] == pytest.approx(acc_gan, abs=0.01)
    assert out["gqi"] == pytest.approx(gqi, abs=1.5)


def test_gan_quality_index_of_a_mode_dropping_model():
    """Sharp samples of two of the three classes only: C_real puts almost none of them in the third class, so
    C_gan hardly learns where it lies and GQI falls well below 100 (how far depends on how C_gan extrapolates to
    a class it barely saw)."""
    rng = np.random.default_rng()
    (real, real_y), (test, test_y) = _three_classes(rng, 20000), _three_classes(rng, 20000)
    fake, _ = _three_classes(rng, 20000, classes=2, std=0.4)
    out = gan_quality_index(
        fake, real, real_y, test, test_y, jax.random.PRNGKey(1), hidden=(), steps=3000, batch_size=512, lr=0.05
    )
    assert out["induced_label_counts"][2] < 0.01 * len(fake)
    assert out["gqi"] < 92


def test_gan_quality_index_bad_input():
    x, y = np.zeros((10, 3)), np.zeros(10, int)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="fake and real must have the same dimension, got 2 and 3"):
        gan_quality_index(x[:, :2], x, y, x, y, key)
    with pytest.raises(ValueError, match=r"real_labels must be \(10,\) ints, one per row of real"):
        gan_quality_index(x, x, y[:5], x, y, key)
    with pytest.raises(ValueError, match="fake must have at least 2 samples"):
        gan_quality_index(x[:1], x, y, x, y, key)
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        gan_quality_index(x, x, y, x, y, key)


def test_linear_probe_reaches_the_bayes_accuracy_whatever_the_feature_scales():
    """Two classes N(-delta u / 2, I) and N(delta u / 2, I) in 6-D (u a random unit vector): the Bayes rule is linear,
    with accuracy Phi(delta / 2). Features scaled by 1e-3 .. 1e3 per axis reach it when standardised."""
    rng = np.random.default_rng()
    d, delta, n = 6, 2.0, 20000
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    scales = 10.0 ** rng.uniform(-3, 3, size=d)

    def draw(m):
        y = rng.integers(0, 2, m)
        return (rng.normal(size=(m, d)) + np.outer(y - 0.5, delta * u)) * scales, y

    (x, y), (xt, yt) = draw(n), draw(n)
    out = linear_probe(x, y, xt, yt, jax.random.PRNGKey(2))
    se = np.sqrt(0.25 / n)
    assert out["accuracy"] == pytest.approx(norm.cdf(delta / 2), abs=4 * se + 0.005)
    assert out["train_accuracy"] == pytest.approx(norm.cdf(delta / 2), abs=4 * se + 0.005)
    assert out["n_train"] == n and out["n_test"] == n


def test_linear_probe_matches_scikit_learn():
    """Five classes in 12-D (random means, correlated noise): test accuracy of our probe against scikit-learn's
    LogisticRegression on the same standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng()
    means = rng.normal(size=(5, 12))
    mix = rng.normal(size=(12, 12)) / np.sqrt(12)

    def draw(m):
        y = rng.integers(0, 5, m)
        return means[y] + rng.normal(size=(m, 12)) @ mix, y

    (x, y), (xt, yt) = draw(10000), draw(10000)
    out = linear_probe(x, y, xt, yt, jax.random.PRNGKey(3), steps=3000)
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=1e4, max_iter=5000).fit(scaler.transform(x), y).score(scaler.transform(xt), yt)
    assert out["accuracy"] == pytest.approx(reference, abs=0.01)


def test_linear_probe_with_l2_is_scikit_learns_regularised_logistic_regression():
    """With ``l2`` the probe minimises mean cross-entropy + l2 / 2 |W|^2, scikit-learn's objective at C = 1 / (l2 n):
    at a strong penalty (where the two optima are far from the unregularised one) the test predictions agree."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng()
    n, d = 4000, 20
    means = rng.normal(size=(3, d)) * 0.5

    def draw(m):
        y = rng.integers(0, 3, m)
        return means[y] + rng.normal(size=(m, d)), y

    (x, y), (xt, yt) = draw(n), draw(n)
    l2 = 0.05
    out = linear_probe(x, y, xt, yt, jax.random.PRNGKey(4), l2=l2, steps=4000, batch_size=1000, lr=0.05)
    scaler = StandardScaler().fit(x)
    reg = LogisticRegression(C=1 / (l2 * n), max_iter=5000).fit(scaler.transform(x), y)
    from sklearn.metrics import log_loss

    assert out["test_log_loss"] == pytest.approx(log_loss(yt, reg.predict_proba(scaler.transform(xt))), rel=5e-3)
    assert out["accuracy"] == pytest.approx(reg.score(scaler.transform(xt), yt), abs=0.006)
    assert out["train_accuracy"] == pytest.approx(reg.score(scaler.transform(x), y), abs=0.006)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0, got -1.0"):
        linear_probe(x, y, xt, yt, jax.random.PRNGKey(4), l2=-1.0)


def test_linear_probe_bad_input():
    x, y = np.zeros((10, 3)), np.r_[np.zeros(5, int), np.ones(5, int)]
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="train_features and test_features must have the same dimension, got 3 and 2"):
        linear_probe(x, y, x[:, :2], y, key)
    with pytest.raises(ValueError, match=r"test_labels must be \(10,\) ints, one per row of test_features"):
        linear_probe(x, y, x, y.astype(float), key)
    with pytest.raises(ValueError, match=r"train_features contains NaN or inf \(in 1 of 10 rows\)"):
        linear_probe(np.where(np.arange(30).reshape(10, 3) == 4, np.nan, x), y, x, y, key)
    with pytest.raises(ValueError, match=r"train_labels must lie in \[0, num_classes=2\), got \[0, 2\]"):
        linear_probe(x, np.r_[y[:9], 2], x, y, key, num_classes=2)
