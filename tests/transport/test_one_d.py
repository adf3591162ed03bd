"""wasserstein_1d against scipy and POT on fresh random inputs, under jax.jit; gradients by finite differences."""

import functools

import jax
import numpy as np
import ot
import pytest
import scipy.stats

from gendl_jax.transport import wasserstein_1d
from gendl_jax.transport.one_d import sort_values


@pytest.fixture
def rng():
    return np.random.default_rng()


def _weights(rng, n, zeros=0.0):
    w = rng.uniform(0.1, 1.0, size=n)
    if zeros:
        w[rng.uniform(size=n) < zeros] = 0.0
        w[0] += 0.5
    return w / w.sum()


def test_p1_weighted_unequal_sizes_matches_scipy(rng):
    u, v = rng.normal(size=37), rng.standard_t(3, size=58) + 0.4
    wu, wv = _weights(rng, 37, zeros=0.2), _weights(rng, 58)
    got = float(jax.jit(wasserstein_1d)(u, v, wu, wv))
    assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v, wu, wv), rel=1e-5, abs=1e-6)


def test_p1_with_ties_and_repeated_values_matches_scipy(rng):
    u = rng.integers(0, 5, size=40).astype(float)
    v = rng.integers(0, 5, size=25).astype(float)
    wu, wv = _weights(rng, 40), _weights(rng, 25)
    got = float(jax.jit(wasserstein_1d)(u, v, wu, wv))
    assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v, wu, wv), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_pth_power_matches_pot(rng, p):
    u, v = rng.normal(size=64) * 2, rng.exponential(size=41)
    wu, wv = _weights(rng, 64), _weights(rng, 41)
    got = float(jax.jit(functools.partial(wasserstein_1d, p=p))(u, v, wu, wv))
    assert got**p == pytest.approx(ot.wasserstein_1d(u, v, wu, wv, p=p), rel=2e-5)


@pytest.mark.parametrize("p", [1, 2])
def test_uniform_equal_sizes_fast_path_matches_scipy_and_pot(rng, p):
    u, v = rng.normal(size=1000), rng.gumbel(size=1000)
    got = float(jax.jit(functools.partial(wasserstein_1d, p=p))(u, v))
    assert got**p == pytest.approx(ot.wasserstein_1d(u, v, p=p), rel=2e-5)
    if p == 1:
        assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=2e-5)


def test_gaussian_quantiles_give_the_closed_form(rng):
    # Monotone rearrangement of two Gaussians: W2^2 = (m1 - m2)^2 + (s1 - s2)^2.
    m1, m2, s1, s2 = rng.normal(), rng.normal(), rng.uniform(0.5, 2), rng.uniform(0.5, 2)
    levels = (np.arange(20000) + 0.5) / 20000
    u = scipy.stats.norm.ppf(levels, m1, s1)
    v = scipy.stats.norm.ppf(levels, m2, s2)[::-1].copy()  # order must not matter
    got = float(jax.jit(functools.partial(wasserstein_1d, p=2))(u, v))
    assert got == pytest.approx(np.hypot(m1 - m2, s1 - s2), rel=2e-3)


def test_sort_values_is_sort_with_negatives_and_zeros(rng):
    x = np.concatenate([rng.normal(size=500), [0.0, -0.0, 1e-30, -1e-30, -3e4, 3e4]]).astype(np.float32)
    rng.shuffle(x)
    np.testing.assert_array_equal(np.asarray(jax.jit(sort_values)(x)), np.sort(x))


def _fd(f, x, direction, h):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_match_finite_differences_of_pot(rng, weighted):
    n, m = 30, (45 if weighted else 30)
    u, v = rng.normal(size=n), rng.normal(size=m) + 0.5
    wu, wv = (_weights(rng, n), _weights(rng, m)) if weighted else (None, None)
    grad = jax.jit(jax.grad(lambda u: wasserstein_1d(u, v, wu, wv, p=2) ** 2))(u)
    for _ in range(3):
        direction = rng.normal(size=n)
        want = _fd(lambda t: ot.wasserstein_1d(t, v, wu, wv, p=2), u, direction, 1e-6)
        assert float(np.dot(grad, direction)) == pytest.approx(want, rel=1e-3, abs=1e-5)
    if weighted:
        # Moving mass between two atoms of u (total unchanged).
        grad_w = jax.jit(jax.grad(lambda w: wasserstein_1d(u, v, w, wv, p=2) ** 2))(wu)
        direction = np.zeros(n)
        direction[[2, 7]] = [1.0, -1.0]
        want = _fd(lambda t: ot.wasserstein_1d(u, v, t, wv, p=2), wu, direction, 1e-7)
        assert float(np.dot(grad_w, direction)) == pytest.approx(want, rel=1e-3, abs=1e-5)


def test_vmap_over_batches(rng):
    u, v = rng.normal(size=(4, 50)), rng.normal(size=(4, 50)) + 1
    got = np.asarray(jax.jit(jax.vmap(wasserstein_1d))(u, v))
    np.testing.assert_allclose(got, [scipy.stats.wasserstein_distance(a, b) for a, b in zip(u, v)], rtol=2e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"u": np.array([])}, "u must be a non-empty 1-D"),
        ({"u": np.ones((3, 2))}, "u must be a non-empty 1-D"),
        ({"v": np.array([0.0, np.inf])}, "v must be finite"),
        ({"u_weights": np.array([0.5, 0.6, -0.1])}, "u_weights must be non-negative"),
        ({"u_weights": np.array([0.5, 0.5])}, r"u_weights must have shape \(3,\)"),
        ({"u_weights": np.array([1.0, 1.0, 1.0])}, "same total mass within relative tolerance"),
        ({"p": 0.5}, "p must be a finite number >= 1"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"u": np.array([0.0, 1.0, 2.0]), "v": np.array([0.5, 1.5])} | kwargs
    with pytest.raises(ValueError, match=match):
        wasserstein_1d(**args)


def test_normalize_divides_each_weight_vector(rng):
    u, v = rng.normal(size=10), rng.normal(size=12)
    wu, wv = rng.uniform(size=10) * 7, rng.uniform(size=12) * 0.3
    got = float(wasserstein_1d(u, v, wu, wv, normalize=True))
    assert got == pytest.approx(scipy.stats.wasserstein_distance(u, v, wu, wv), rel=1e-5)
