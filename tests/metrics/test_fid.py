"""FID / Frechet distance against scipy's sqrtm formula and the closed form for diagonal Gaussians."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from gendl_jax.metrics import (
    feature_statistics,
    fid,
    frechet_distance,
    per_class_fid,
    trace_sqrt_product,
)


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
    np.testing.assert_allclose(
        fid(x.astype(np.float32), y.astype(np.float32)), _reference_frechet(mu1, s1, mu2, s2), rtol=1e-6
    )
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


def _with_spectrum(rng, eigenvalues):
    """Q diag(eigenvalues) Q^T for a random orthogonal Q (exactly symmetric)."""
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    s = (q * eigenvalues) @ q.T
    return (s + s.T) / 2


def test_frechet_distance_rejects_the_issue_example():
    """issue 27: sigma2 = diag(1, -4) returned -3.0."""
    with pytest.raises(ValueError, match=r"sigma2 must be positive semi-definite.*smallest eigenvalue is -4"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -4.0]))
    with pytest.raises(ValueError, match=r"sigma1 must be positive semi-definite.*smallest eigenvalue is -4"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma1 must be positive semi-definite"):
        frechet_distance(np.zeros(3), -np.eye(3), np.zeros(3), np.eye(3))  # largest eigenvalue < 0 too


@pytest.mark.parametrize("seed", range(3))
def test_psd_check_against_numpy_eigenvalues(seed):
    """Random spectra with a smallest eigenvalue just inside / outside -tol x largest: the decision matches
    numpy's eigenvalues, the accepted ones give scipy sqrtm's value, and tol moves the boundary."""
    from gendl_jax.metrics.fid import PSD_TOLERANCE as tol

    rng = np.random.default_rng(1000 + seed)
    d = int(rng.integers(3, 60))
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    good = _random_spd(rng, d)
    top = rng.uniform(0.5, 50.0)
    for factor, ok in ((0.0, True), (0.3, True), (3.0, False), (1e3, False)):
        w = np.concatenate([[top], rng.uniform(0.0, top, size=d - 2), [-factor * tol * top]])
        s = _with_spectrum(rng, w)
        ev = np.linalg.eigvalsh(s)
        assert (ev[0] >= -tol * ev[-1]) == ok
        for first in (True, False):
            args = (mu1, s, mu2, good) if first else (mu1, good, mu2, s)
            if ok:
                np.testing.assert_allclose(frechet_distance(*args), _reference_frechet(*args), rtol=1e-6, atol=1e-9)
            else:
                with pytest.raises(ValueError, match=f"sigma{1 if first else 2} must be positive semi-definite"):
                    frechet_distance(*args)
        if not ok and factor < 10:
            frechet_distance(mu1, s, mu2, good, tol=10 * factor * tol)  # a looser tolerance accepts it


@pytest.mark.parametrize("seed", range(2))
def test_symmetry_check_is_relative_to_scale(seed):
    from gendl_jax.metrics.fid import PSD_TOLERANCE as tol

    rng = np.random.default_rng(2000 + seed)
    d = int(rng.integers(3, 30))
    scale = 10.0 ** rng.uniform(-6, 6)  # the tolerance follows the matrix's scale
    s = scale * _random_spd(rng, d)
    noise = rng.normal(size=(d, d))
    noise /= np.abs(noise - noise.T).max()
    m = np.abs(s).max()
    inside, outside = s + 0.3 * tol * m * noise, s + 3.0 * tol * m * noise
    mu = rng.normal(size=d)
    np.testing.assert_allclose(
        frechet_distance(mu, inside, mu, s),
        _reference_frechet(mu, (inside + inside.T) / 2, mu, s),
        rtol=1e-5,
        atol=1e-9 * scale,
    )
    with pytest.raises(ValueError, match=r"sigma2 must be symmetric.*max \|S - S\^T\|"):
        frechet_distance(mu, s, mu, outside)


@pytest.mark.parametrize("seed", range(2))
def test_float32_covariances_of_features_pass(seed):
    """Covariances computed in float32 (numpy, and jnp under jit) from fresh ReLU-like features, singular
    (n < d) and full rank, pass the check, and give fid()'s float64 value to float32 accuracy; the
    statistics of feature_statistics (which fid uses) pass it too."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(3000 + seed)
    d = 128

    @jax.jit
    def cov32(x):
        xc = x - x.mean(0)
        return xc.T @ xc / (x.shape[0] - 1)

    for n in (100, 700):
        z = rng.normal(size=(n, 32)) @ rng.normal(size=(32, d)) / 6
        x = np.maximum(z + 0.3 * rng.normal(size=(n, d)), 0).astype(np.float32)
        y = np.maximum(z[::-1] * 1.1 + 0.3 * rng.normal(size=(n, d)) + 0.05, 0).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # n < d: singular covariance
            expected = fid(x, y)
            (m1, s1), (m2, s2) = feature_statistics(x), feature_statistics(y)
        assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-9)
        for s1_32, s2_32 in (
            (np.cov(x, rowvar=False, dtype=np.float32), np.cov(y, rowvar=False, dtype=np.float32)),
            (np.asarray(cov32(jnp.asarray(x))), np.asarray(cov32(jnp.asarray(y)))),
        ):
            assert s1_32.dtype == np.float32
            got = frechet_distance(x.mean(0), s1_32, y.mean(0), s2_32)
            np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_frechet_distance_shape_and_argument_errors():
    rng = np.random.default_rng(0)
    s = _random_spd(rng, 3)
    with pytest.raises(ValueError, match="mu1 and mu2 must have the same dimension"):
        frechet_distance(np.zeros(3), s, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match=r"mu2 must have shape \(d,\)"):
        frechet_distance(np.zeros(3), s, np.zeros((3, 1)), s)
    with pytest.raises(ValueError, match=r"sigma1 must have shape \(3, 3\)"):
        frechet_distance(np.zeros(3), s[:, :2], np.zeros(3), s)
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(np.zeros(3), np.where(np.eye(3) > 0, np.inf, s), np.zeros(3), s)
    with pytest.raises(ValueError, match="tol"):
        frechet_distance(np.zeros(3), s, np.zeros(3), s, tol=-1e-3)


def test_frechet_distance_refuses_tracers():
    import jax

    s = np.eye(2)
    with pytest.raises(TypeError, match="cannot be traced.*trace_sqrt_product"):
        jax.jit(frechet_distance)(np.zeros(2), s, np.zeros(2), s)
