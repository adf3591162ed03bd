"""Sinkhorn and Sinkhorn divergence (ott-jax) against POT in float64; sliced W against a quadrature reference
within Monte-Carlo error; Gaussian W2 against closed forms and scipy.linalg.sqrtm."""

import functools

import jax
import numpy as np
import ot
import pytest
import scipy.linalg

from gendl_jax.transport import gaussian_w2, sinkhorn_divergence, transport_plan, wasserstein


@pytest.fixture
def rng():
    return np.random.default_rng()


def _weights(rng, n):
    w = rng.uniform(0.2, 1.0, size=n)
    return w / w.sum()


def test_sinkhorn_matches_pot_sinkhorn_log(rng):
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(45, 2)) + 1
    a, b = _weights(rng, 60), _weights(rng, 45)
    eps = 0.2
    fn = jax.jit(functools.partial(wasserstein, method="sinkhorn", epsilon=eps, threshold=1e-6, max_iterations=5000))
    value, converged = fn(x, y, a, b)
    assert bool(converged)
    want = ot.sinkhorn2(a, b, ot.dist(x, y), eps, method="sinkhorn_log", stopThr=1e-9, numItermax=50000)
    assert float(value) ** 2 == pytest.approx(want, rel=1e-4)


def test_sinkhorn_plan_matches_pot_and_reports_non_convergence(rng):
    # epsilon = 1: the slowest of 1,000 seeds needed 190 iterations. At epsilon = 0.3 about 1% of seeds
    # (heavy-tailed draws) still had a marginal error of ~1e-5 after 5,000 iterations, in POT as in ott.
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    u = np.full(30, 1 / 30)
    plan, converged = jax.jit(
        functools.partial(transport_plan, method="sinkhorn", epsilon=1.0, threshold=1e-6, max_iterations=5000)
    )(x, y)
    assert bool(converged)
    ref = ot.sinkhorn(u, u, ot.dist(x, y), 1.0, method="sinkhorn_log", stopThr=1e-9, numItermax=5000)
    np.testing.assert_allclose(np.asarray(plan), ref, atol=1e-5)
    few = functools.partial(wasserstein, method="sinkhorn", epsilon=1e-3, threshold=1e-9, max_iterations=3)
    _, converged = jax.jit(few)(x, y)
    assert not bool(converged)


def _entropic_cost_float64(x, y, a, b, eps):
    C = ot.dist(x, y)
    P = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-9, numItermax=20000)
    ab = np.outer(a, b)
    kl = np.sum(np.where(P > 0, P * np.log(np.where(P > 0, P, 1) / ab), 0.0)) - P.sum() + ab.sum()
    return np.sum(P * C) + eps * kl


# POT's Sinkhorn on OT(a, a) with uneven weights stalls near a marginal error of 3e-8 on about 1% of
# draws (measured on 300 seeds) and warns; the cost is then still far inside the rel 1e-3 tolerance.
@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_divergence_against_float64_pot_reference(rng):
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) * 0.7 + 0.5
    a, b = _weights(rng, 40), _weights(rng, 40)
    eps = 0.5
    divergence = jax.jit(functools.partial(sinkhorn_divergence, epsilon=eps, threshold=1e-5, max_iterations=10000))
    value, converged = divergence(x, y, a, b)
    assert bool(converged)
    want = _entropic_cost_float64(x, y, a, b, eps) - 0.5 * (
        _entropic_cost_float64(x, x, a, a, eps) + _entropic_cost_float64(y, y, b, b, eps)
    )
    assert float(value) == pytest.approx(want, rel=1e-3, abs=1e-5)
    same, _ = sinkhorn_divergence(x, x, a, a, epsilon=eps, threshold=1e-5, max_iterations=10000)
    assert float(same) == pytest.approx(0.0, abs=1e-5)


def test_sinkhorn_with_p3_dense_cost_matches_pot(rng):
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(30, 2)) + 1
    u, v = np.full(25, 1 / 25), np.full(30, 1 / 30)
    fn = jax.jit(functools.partial(wasserstein, p=3, method="sinkhorn", epsilon=1.0, threshold=1e-6))
    value, converged = fn(x, y)
    assert bool(converged)
    want = ot.sinkhorn2(u, v, ot.dist(x, y, metric="euclidean") ** 3, 1.0, method="sinkhorn_log", stopThr=1e-9)
    assert float(value) ** 3 == pytest.approx(want, rel=1e-4)


def _sliced_reference_2d(x, y, p, n_angles=500):
    """Sliced W_p^p in 2-D by quadrature over the half circle (directions theta and -theta give the same W_p)."""
    angles = (np.arange(n_angles) + 0.5) * np.pi / n_angles
    values = []
    for t in angles:
        d = np.array([np.cos(t), np.sin(t)])
        values.append(ot.wasserstein_1d(x @ d, y @ d, p=p))
    return np.mean(values), np.std(values)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_within_monte_carlo_error_of_quadrature_and_pot(rng, p):
    x, y = rng.normal(size=(200, 2)) * [2.0, 0.5], rng.normal(size=(150, 2)) + [1.0, 0.0]
    mean, spread = _sliced_reference_2d(x, y, p)
    k = 400
    fn = jax.jit(functools.partial(wasserstein, p=p, method="sliced", n_projections=k))
    got = float(fn(x, y, key=jax.random.key(int(rng.integers(2**31)))))
    tol = 4 * spread / np.sqrt(k)
    assert abs(got**p - mean) < tol
    pot = ot.sliced_wasserstein_distance(x, y, n_projections=k, p=p, seed=int(rng.integers(2**31)))
    assert abs(pot**p - mean) < tol


def test_sliced_uses_the_key(rng):
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)) + 1
    v1 = float(wasserstein(x, y, method="sliced", key=jax.random.key(1), n_projections=8))
    v2 = float(wasserstein(x, y, method="sliced", key=jax.random.key(2), n_projections=8))
    v1b = float(wasserstein(x, y, method="sliced", key=jax.random.key(1), n_projections=8))
    assert v1 != v2 and v1 == v1b


@pytest.mark.parametrize("m", [16, 12])  # uniform equal sizes, and the weighted path
def test_sliced_gradient_of_a_jitted_function_matches_numpy(rng, m):
    """jax.grad(jax.jit(f)) (it used to fail in sort_values' custom JVP under vmap over axis 1), against the
    gradient of W_p^p written in numpy from the sorted projections (equal sizes: 2/(n k) sum_theta (u_(i) - v_(i))
    theta at each point's rank)."""
    x, y = rng.normal(size=(16, 2)), rng.normal(size=(m, 2))
    key = jax.random.key(int(rng.integers(2**31)))
    f = lambda x: wasserstein(x, y, method="sliced", key=key, n_projections=20) ** 2
    got = np.asarray(jax.grad(jax.jit(f))(x.astype(np.float32)))
    np.testing.assert_allclose(got, np.asarray(jax.jit(jax.grad(f))(x.astype(np.float32))), rtol=1e-5, atol=1e-7)
    if m == 16:
        directions = np.asarray(jax.random.normal(key, (20, 2), np.float32), np.float64)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        expected = np.zeros_like(x)
        for theta in directions:
            u, v = x @ theta, y @ theta
            order = np.argsort(u)
            expected[order] += (2.0 / (16 * 20)) * (u[order] - np.sort(v))[:, None] * theta
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_method_1d_matches_pot(rng):
    x, y = rng.normal(size=(30, 1)), rng.normal(size=(20, 1))
    a, b = _weights(rng, 30), _weights(rng, 20)
    got = float(wasserstein(x, y, a, b, p=2, method="1d"))
    assert got**2 == pytest.approx(ot.emd2(a, b, ot.dist(x, y)), rel=1e-5)


def _spd(rng, d):
    B = rng.normal(size=(d, d))
    return B @ B.T / d + 0.1 * np.eye(d)


def test_gaussian_w2_closed_forms(rng):
    m1, m2, s1, s2 = rng.normal(size=1), rng.normal(size=1), rng.uniform(0.3, 2), rng.uniform(0.3, 2)
    got = float(jax.jit(gaussian_w2)(m1, np.array([[s1**2]]), m2, np.array([[s2**2]])))
    assert got == pytest.approx(np.hypot(m1[0] - m2[0], s1 - s2), rel=1e-5)
    d1, d2 = rng.uniform(0.1, 3, size=4), rng.uniform(0.1, 3, size=4)  # commuting (diagonal) covariances
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    want = np.sqrt(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2))
    assert float(gaussian_w2(mu1, np.diag(d1), mu2, np.diag(d2))) == pytest.approx(want, rel=1e-5)


def test_gaussian_w2_against_scipy_sqrtm_and_pot(rng):
    d = 6
    m1, m2, S1, S2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
    root = scipy.linalg.sqrtm(S1).real
    want = np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * scipy.linalg.sqrtm(root @ S2 @ root).real))
    got = float(jax.jit(gaussian_w2)(m1, S1, m2, S2))
    assert got == pytest.approx(want, rel=1e-4)
    assert got == pytest.approx(float(ot.gaussian.bures_wasserstein_distance(m1, m2, S1, S2)), rel=1e-4)


def test_gaussian_w2_bad_covariance():
    with pytest.raises(ValueError, match="S2 must be positive semi-definite"):
        gaussian_w2(np.zeros(2), np.eye(2), np.zeros(2), np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="S1 must be symmetric"):
        gaussian_w2(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2))
