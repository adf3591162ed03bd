"""FID / Frechet distance against scipy's sqrtm formula and the closed form for diagonal Gaussians."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from gendl_jax.metrics import feature_statistics, fid, frechet_distance, per_class_fid, trace_sqrt_product


def _random_spd(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d + 3))
    return a @ a.T / a.shape[1] + 1e-3 * np.eye(d)


def _reference_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("seed", range(3))
def test_frechet_distance_matches_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(2, 40))
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    np.testing.assert_allclose(frechet_distance(mu1, s1, mu2, s2), _reference_frechet(mu1, s1, mu2, s2), rtol=1e-9)


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(7)
    d = 30
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # W2^2 of diagonal Gaussians
    np.testing.assert_allclose(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected, rtol=1e-12)


@pytest.mark.parametrize("singular_first", [False, True])
def test_trace_sqrt_product_cholesky_and_eigh_paths(singular_first):
    rng = np.random.default_rng(5)
    full, low = _random_spd(rng, 12), _random_spd(rng, 12, rank=4) - 1e-3 * np.eye(12)
    s1, s2 = (low, full) if singular_first else (full, low)  # singular S1: Cholesky fails, eigh path
    expected = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    import jax

    with jax.enable_x64(True):
        np.testing.assert_allclose(float(trace_sqrt_product(s1, s2)), expected, rtol=1e-6)


def test_trace_sqrt_product_of_rank_deficient_matrices():
    rng = np.random.default_rng(3)
    s1, s2 = _random_spd(rng, 20, rank=5) - 1e-3 * np.eye(20), _random_spd(rng, 20)
    s1 = (s1 + s1.T) / 2
    # eigenvalues of s1^1/2 s2 s1^1/2 = those of s1 s2 (real, >= 0)
    expected = np.sum(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)))
    import jax

    with jax.enable_x64(True):
        np.testing.assert_allclose(float(trace_sqrt_product(s1, s2)), expected, rtol=1e-7)


@pytest.mark.parametrize("seed", range(2))
def test_fid_matches_numpy_float64_reference(seed):
    rng = np.random.default_rng(100 + seed)
    d = 16
    x = rng.normal(size=(500, d)) @ rng.normal(size=(d, d))
    y = rng.normal(size=(300, d)) * 1.3 + 0.2
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False, ddof=1)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False, ddof=1)
    np.testing.assert_allclose(fid(x.astype(np.float32), y.astype(np.float32)),
                               _reference_frechet(mu1, s1, mu2, s2), rtol=1e-6)
    m, s = feature_statistics(x)
    np.testing.assert_allclose(m, mu1, rtol=1e-12)
    np.testing.assert_allclose(s, s1, rtol=1e-10)


def test_identical_sets_give_zero():
    x = np.random.default_rng(0).normal(size=(400, 32))
    assert abs(fid(x, x)) < 1e-9


def test_singular_covariance_warns_with_needed_count():
    x = np.random.default_rng(0).normal(size=(20, 64))
    with pytest.warns(RuntimeWarning, match="at least 65 samples"):
        fid(x, x + 1)


def test_no_warning_with_enough_samples():
    x = np.random.default_rng(0).normal(size=(100, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid(x, x + 1)


def test_bad_input():
    x = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ValueError, match="NaN"):
        fid(np.where(np.arange(4) == 2, np.nan, x), x)
    with pytest.raises(ValueError, match="same dimension"):
        fid(x, x[:, :3])
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        fid(x[0], x)
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        frechet_distance(np.zeros(4), np.eye(4), np.zeros(4), np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]))


def test_trace_term_keeps_float64_precision_at_feature_sizes():
    """d = 2048 (Inception's size; large enough that XLA:CPU runs the host callback on a thread
    without 64-bit mode, where jax casts float64 operands to float32): the trace term equals a float64
    numpy evaluation to 1e-12, not to float32's 1e-7."""
    import jax

    rng = np.random.default_rng(11)
    d = 2048
    s1, s2 = _random_spd(rng, d), 1.5 * _random_spd(rng, d)
    chol = np.linalg.cholesky(s1)
    expected = np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(chol.T @ s2 @ chol), 0.0)))
    with jax.enable_x64(True):
        got = float(trace_sqrt_product(jax.numpy.asarray(s1), jax.numpy.asarray(s2)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_per_class_fid_matches_scipy_per_class():
    rng = np.random.default_rng(7)
    d, classes = 4, 3
    labels_real, labels_fake = rng.integers(0, classes, 300), rng.integers(0, classes, 250)
    shift = rng.normal(size=(classes, d))
    real = rng.normal(size=(300, d)) + shift[labels_real]
    fake = rng.normal(scale=1.3, size=(250, d)) + 0.8 * shift[labels_fake]
    got = per_class_fid(real, labels_real, fake, labels_fake)
    expected = []
    for k in range(classes):
        r, f = real[labels_real == k], fake[labels_fake == k]
        expected.append(_reference_frechet(r.mean(0), np.cov(r, rowvar=False), f.mean(0), np.cov(f, rowvar=False)))
    np.testing.assert_allclose(got, expected, rtol=1e-8)
    assert got.shape == (classes,)


def test_per_class_fid_bad_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match=r"classes 2 \(0 real, 1 fake\)"):
        per_class_fid(x, np.arange(20) % 2, x[:5], np.array([0, 0, 1, 1, 2]))
    with pytest.raises(ValueError, match="labels_fake must be"):
        per_class_fid(x, np.arange(20) % 2, x, np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="labels_real must be"):
        per_class_fid(x, np.arange(19) % 2, x, np.arange(20) % 2)
