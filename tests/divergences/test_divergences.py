"""Divergences against scipy / float64 numpy references on fresh random inputs, under jax.jit."""

import functools
import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.spatial.distance as ssd
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from gendl_jax import divergences as dv


def _hist(rng, shape, zeros=0.0):
    h = rng.gamma(0.7, size=shape)
    if zeros:
        h = np.where(rng.uniform(size=shape) < zeros, 0.0, h)
        h[..., 0] += 0.1  # never an all-zero histogram
    return h / h.sum(-1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng()


def _jit(fn, **kw):
    return jax.jit(functools.partial(fn, **kw))


def test_kl_matches_scipy_entropy_with_zero_bins(rng):
    p, q = _hist(rng, (6, 17), zeros=0.3), _hist(rng, (6, 17))
    got = np.asarray(_jit(dv.kl)(p, q))
    want = [scipy.stats.entropy(pi, qi) for pi, qi in zip(p, q)]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_kl_infinite_where_q_misses_mass_of_p(rng):
    p, q = _hist(rng, (9,)), _hist(rng, (9,))
    q[3] = 0.0
    q /= q.sum()
    assert np.isinf(float(_jit(dv.kl)(p, q)))
    assert np.isinf(scipy.stats.entropy(p, q))
    # The other way round stays finite.
    assert np.isfinite(float(_jit(dv.kl)(q, p)))


def test_kl_gradient_finite_at_empty_bins(rng):
    p, q = _hist(rng, (12,), zeros=0.4), _hist(rng, (12,))
    g = jax.jit(jax.grad(dv.kl, argnums=(0, 1)))(p, q)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in g)
    # d/dq_i KL(p||q) = -p_i / q_i
    np.testing.assert_allclose(np.asarray(g[1]), -p / q, rtol=1e-4, atol=1e-6)


def test_jsd_is_squared_scipy_jensenshannon_and_broadcasts(rng):
    p, q = _hist(rng, (5, 1, 11), zeros=0.3), _hist(rng, (1, 4, 11), zeros=0.3)
    got = np.asarray(_jit(dv.jsd)(p, q))
    assert got.shape == (5, 4)
    want = ssd.jensenshannon(p, q, axis=-1) ** 2
    np.testing.assert_allclose(got, want, rtol=5e-5, atol=1e-6)


def test_jsd_is_log2_for_disjoint_supports():
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.25, 0.75])
    assert float(_jit(dv.jsd)(p, q)) == pytest.approx(math.log(2), rel=1e-6)


@pytest.mark.parametrize("r", [1, 2, 3.5, math.inf])
def test_minkowski_matches_scipy(rng, r):
    p, q = _hist(rng, (4, 13)), _hist(rng, (4, 13))
    got = np.asarray(_jit(dv.minkowski, r=r)(p, q))
    if math.isinf(r):
        want = [ssd.chebyshev(a, b) for a, b in zip(p, q)]
    else:
        want = [ssd.minkowski(a, b, p=r) for a, b in zip(p, q)]
    np.testing.assert_allclose(got, want, rtol=2e-5)


def test_histogram_intersection_against_float64(rng):
    p, q = rng.uniform(size=(3, 10)) * 5, rng.uniform(size=(3, 10))  # not normalised: allowed here
    got = np.asarray(jax.jit(dv.histogram_intersection)(p, q))
    want = 1 - np.minimum(p, q).sum(-1) / q.sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_chi2_rubner_with_empty_bins(rng):
    p, q = _hist(rng, (3, 15), zeros=0.4), _hist(rng, (3, 15), zeros=0.4)
    p[:, 5] = q[:, 5] = 0.0  # an empty bin in both
    got = np.asarray(jax.jit(dv.chi2)(p, q))
    want = []
    for a, b in zip(p, q):
        m = (a + b) / 2
        k = m > 0
        want.append(np.sum((a[k] - m[k]) ** 2 / m[k]))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    # (p - m)^2 / m = (p - q)^2 / (2 (p + q)): the symmetric chi^2 of the lecture up to a factor 2.
    k = (p + q) > 0
    np.testing.assert_allclose(got, np.where(k, (p - q) ** 2 / np.where(k, 2 * (p + q), 1), 0).sum(-1), rtol=2e-5)


def test_quadratic_form_matches_scipy_mahalanobis(rng):
    n = 9
    B = rng.normal(size=(n, n))
    A = B @ B.T / n
    p, q = _hist(rng, (n,)), _hist(rng, (n,))
    got = float(jax.jit(dv.quadratic_form)(p, q, A))
    assert got == pytest.approx(ssd.mahalanobis(p, q, A), rel=1e-4)


def test_kolmogorov_smirnov_matches_scipy_ks_2samp(rng):
    n = 12
    counts_p, counts_q = rng.integers(0, 40, size=n) + 1, rng.integers(0, 40, size=n) + 1
    p, q = counts_p / counts_p.sum(), counts_q / counts_q.sum()
    samples_p, samples_q = np.repeat(np.arange(n), counts_p), np.repeat(np.arange(n), counts_q)
    want = scipy.stats.ks_2samp(samples_p, samples_q).statistic
    assert float(_jit(dv.kolmogorov_smirnov)(p, q)) == pytest.approx(want, abs=1e-6)


def test_match_distance_is_scipy_wasserstein_on_bin_indices(rng):
    n = 20
    p, q = _hist(rng, (n,), zeros=0.3), _hist(rng, (n,), zeros=0.3)
    want = scipy.stats.wasserstein_distance(np.arange(n), np.arange(n), p, q)
    assert float(_jit(dv.match_distance)(p, q)) == pytest.approx(want, rel=1e-5)


def test_hellinger_bhattacharyya_total_variation_against_float64(rng):
    p, q = _hist(rng, (4, 14), zeros=0.3), _hist(rng, (4, 14), zeros=0.3)
    bc = np.sqrt(p * q).sum(-1)
    np.testing.assert_allclose(np.asarray(_jit(dv.hellinger)(p, q)), np.sqrt(1 - bc), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(_jit(dv.bhattacharyya)(p, q)), -np.log(bc), rtol=1e-4)
    tv = np.array([ssd.cityblock(a, b) / 2 for a, b in zip(p, q)])
    np.testing.assert_allclose(np.asarray(_jit(dv.total_variation)(p, q)), tv, rtol=1e-5)


def test_normalize_divides_by_totals(rng):
    p, q = rng.uniform(size=8) * 3, rng.uniform(size=8) * 0.2
    assert float(_jit(dv.kl, normalize=True)(p, q)) == pytest.approx(scipy.stats.entropy(p, q), rel=1e-5)


def _gauss(rng, d):
    B = rng.normal(size=(d, d))
    return rng.normal(size=d), B @ B.T / d + 0.3 * np.eye(d)


def _kl_gaussians_float64(m1, S1, m2, S2):
    d = len(m1)
    S2inv = np.linalg.inv(S2)
    return 0.5 * (
        np.trace(S2inv @ S1) + (m2 - m1) @ S2inv @ (m2 - m1) - d + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1]
    )


def test_kl_gaussians_against_numerical_integration_in_1d(rng):
    m1, m2 = rng.normal(size=2)
    s1, s2 = rng.uniform(0.5, 2.0, size=2)
    d1, d2 = scipy.stats.norm(m1, s1), scipy.stats.norm(m2, s2)
    want = scipy.integrate.quad(lambda t: d1.pdf(t) * (d1.logpdf(t) - d2.logpdf(t)), -30, 30)[0]
    got = float(jax.jit(dv.kl_gaussians)(np.array([m1]), np.array([[s1**2]]), np.array([m2]), np.array([[s2**2]])))
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_kl_gaussians_against_float64_formula(rng):
    m1, S1 = _gauss(rng, 5)
    m2, S2 = _gauss(rng, 5)
    got = float(jax.jit(dv.kl_gaussians)(m1, S1, m2, S2))
    assert got == pytest.approx(_kl_gaussians_float64(m1, S1, m2, S2), rel=1e-4)
    assert float(dv.kl_gaussians(m1, S1, m1, S1)) == pytest.approx(0.0, abs=1e-5)


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p, q, match",
    [
        ([0.5, -0.1, 0.6], [0.3, 0.3, 0.4], "p must be non-negative"),
        ([0.5, np.nan, 0.5], [0.3, 0.3, 0.4], "p must be finite"),
        ([0.5, 0.5], [0.3, 0.3, 0.4], "same number of bins"),
        ([0.5, 0.6, 0.1], [0.3, 0.3, 0.4], "p must sum to 1"),
        ([], [], "at least one bin"),
    ],
)
def test_bad_histograms_raise(p, q, match):
    with pytest.raises(ValueError, match=match):
        dv.kl(np.array(p), np.array(q))


def test_bad_parameters_raise():
    p = np.array([0.2, 0.8])
    with pytest.raises(ValueError, match="r must be >= 1"):
        dv.minkowski(p, p, r=0.5)
    with pytest.raises(ValueError, match="positive semi-definite"):
        dv.quadratic_form(p, p, np.array([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="A must have shape"):
        dv.quadratic_form(p, p, np.eye(3))
    with pytest.raises(ValueError, match="q must have a positive total"):
        dv.histogram_intersection(p, np.zeros(2))
    with pytest.raises(ValueError, match="S2 must be positive definite"):
        dv.kl_gaussians(np.zeros(2), np.eye(2), np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="leading axes"):
        dv.jsd(np.full((2, 2), 0.5), np.full((3, 2), 0.5))


# --- properties ----------------------------------------------------------------------------------------------

# A fixed number of bins keeps every example on the same compiled shapes.
_probs = st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8).filter(lambda v: sum(v) > 1e-3)


def _pair(draw_p, draw_q):
    n = min(len(draw_p), len(draw_q))
    p, q = np.array(draw_p[:n]), np.array(draw_q[:n])
    if p.sum() == 0 or q.sum() == 0:
        p, q = p + 1e-3, q + 1e-3
    return p / p.sum(), q / q.sum()


@settings(max_examples=40, deadline=None)
@given(_probs, _probs)
def test_symmetric_bounded_divergences(draw_p, draw_q):
    p, q = _pair(draw_p, draw_q)
    j = float(dv.jsd(p, q))
    assert -1e-6 <= j <= math.log(2) + 1e-6
    assert j == pytest.approx(float(dv.jsd(q, p)), abs=1e-6)
    for fn, hi in ((dv.hellinger, 1.0), (dv.total_variation, 1.0), (dv.kolmogorov_smirnov, 1.0)):
        v = float(fn(p, q))
        assert -1e-6 <= v <= hi + 1e-5
        assert v == pytest.approx(float(fn(q, p)), abs=1e-6)
    assert float(dv.kl(p, q)) >= -1e-6
    assert float(dv.kl(p, p)) == pytest.approx(0.0, abs=1e-6)
    # Pinsker: TV <= sqrt(KL / 2); and Hellinger^2 <= TV.
    assert float(dv.total_variation(p, q)) <= math.sqrt(max(float(dv.kl(p, q)), 0.0) / 2) + 1e-5
    assert float(dv.hellinger(p, q)) ** 2 <= float(dv.total_variation(p, q)) + 1e-5
