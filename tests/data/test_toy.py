import dataclasses
import itertools
import math

import jax
import numpy as np
import pytest
from scipy import integrate

from gendl_jax.data import TOY_DISTRIBUTIONS, GaussianMixture, grid25, ring8, swissroll

N_SAMPLES = 20_000
# P(|z| < 3) for a standard 2-D Gaussian (chi distribution with 2 dof): 1 - exp(-9/2).
P_WITHIN_3STD = 1.0 - math.exp(-4.5)


def _check_mixture_samples(dist: GaussianMixture, x: np.ndarray):
    """Independent check of samples: assignment, weights, means, stds, radial law."""
    x = np.asarray(x, dtype=np.float64)
    n, k = x.shape[0], dist.n_modes
    d = np.linalg.norm(x[:, None, :] - dist.modes[None], axis=-1)
    comp = d.argmin(axis=1)
    counts = np.bincount(comp, minlength=k)
    # Uniform weights: each count within 5 binomial standard errors of n/K.
    se = math.sqrt(n * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - n / k) < 5 * se), counts
    resid = x - dist.modes[comp]
    # Pooled per-coordinate std within 2% (standard error ~0.35% here).
    pooled = resid.std()
    assert abs(pooled / dist.std - 1) < 0.02, (pooled, dist.std)
    for j in range(k):
        r = resid[comp == j]
        se_mean = dist.std / math.sqrt(len(r))
        assert np.all(np.abs(r.mean(axis=0)) < 5 * se_mean), (j, r.mean(axis=0))
        assert abs(r.std() / dist.std - 1) < 0.12, (j, r.std(), dist.std)
    # Radial law: fraction within 3 std of the nearest mode.
    frac = np.mean(d.min(axis=1) < 3 * dist.std)
    se_frac = math.sqrt(P_WITHIN_3STD * (1 - P_WITHIN_3STD) / n)
    assert abs(frac - P_WITHIN_3STD) < 5 * se_frac, frac


def test_ring8_modes():
    dist = ring8()
    assert dist.name == "ring8" and dist.n_modes == 8 and dist.std == 0.01
    m = dist.modes
    assert m.shape == (8, 2) and m.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-12)
    angles = np.sort(np.mod(np.arctan2(m[:, 1], m[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, np.arange(8) * np.pi / 4, atol=1e-12)
    pair = np.linalg.norm(m[:, None] - m[None], axis=-1)[np.triu_indices(8, 1)]
    assert pair.min() == pytest.approx(2 * math.sin(math.pi / 8), abs=1e-12)
    assert len({tuple(np.round(p, 9)) for p in m}) == 8
    big = ring8(radius=2.5, std=0.1)
    np.testing.assert_allclose(big.modes, 2.5 * m, atol=1e-12)
    assert big.std == 0.1


def test_grid25_modes():
    dist = grid25()
    assert dist.n_modes == 25 and dist.std == 0.05
    expected = set(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))
    got = {tuple(float(v) for v in p) for p in dist.modes}
    assert got == expected
    np.testing.assert_array_equal(grid25(spacing=1.0).modes * 2.0, dist.modes)


def test_swissroll_modes_on_spiral_evenly_spaced():
    dist = swissroll()
    m = dist.modes
    assert m.shape == (25, 2)
    scale = 4.5 * math.pi / 2
    # On the curve: t = |(x, y)| * scale and (x, y) * scale = (t cos t, t sin t).
    t = np.linalg.norm(m, axis=1) * scale
    np.testing.assert_allclose(m * scale, np.stack([t * np.cos(t), t * np.sin(t)], 1), atol=1e-9)
    assert np.all(np.diff(t) > 0)
    assert t[0] == pytest.approx(1.5 * math.pi) and t[-1] == pytest.approx(4.5 * math.pi)
    # Even arc-length spacing, checked by numerical quadrature of |d/dt (t cos t, t sin t)|.
    arcs = np.array([integrate.quad(lambda u: math.sqrt(1 + u * u), a, b)[0] for a, b in itertools.pairwise(t)])
    np.testing.assert_allclose(arcs, arcs.mean(), rtol=1e-8)
    total = integrate.quad(lambda u: math.sqrt(1 + u * u), 1.5 * math.pi, 4.5 * math.pi)[0]
    assert arcs.sum() == pytest.approx(total, rel=1e-10)
    # Fits in [-2, 2]^2; default std = spacing / 8; 3-std balls disjoint.
    assert np.abs(m).max() == pytest.approx(2.0)
    assert dist.std == pytest.approx(arcs.mean() / scale / 8, rel=1e-8)
    pair = np.linalg.norm(m[:, None] - m[None], axis=-1)[np.triu_indices(25, 1)]
    assert pair.min() > 6 * dist.std
    assert swissroll(n_modes=10, std=0.2).std == 0.2
    assert swissroll(n_modes=10).n_modes == 10


@pytest.mark.parametrize("name", sorted(TOY_DISTRIBUTIONS))
def test_sample_numpy_statistics(name):
    dist = TOY_DISTRIBUTIONS[name]()
    x = dist.sample(np.random.default_rng(123), N_SAMPLES)
    assert x.shape == (N_SAMPLES, 2) and x.dtype == np.float32
    _check_mixture_samples(dist, x)
    np.testing.assert_array_equal(x, dist.sample(np.random.default_rng(123), N_SAMPLES))


@pytest.mark.parametrize("name", sorted(TOY_DISTRIBUTIONS))
def test_sample_jax_under_jit_statistics(name):
    dist = TOY_DISTRIBUTIONS[name]()
    f = jax.jit(dist.sample_jax, static_argnums=1)
    x = f(jax.random.key(7), N_SAMPLES)
    assert x.shape == (N_SAMPLES, 2) and x.dtype == np.float32
    _check_mixture_samples(dist, np.asarray(x))
    np.testing.assert_array_equal(np.asarray(x), np.asarray(f(jax.random.key(7), N_SAMPLES)))
    assert not np.array_equal(np.asarray(x), np.asarray(f(jax.random.key(8), N_SAMPLES)))
    # Raw uint32 keys work too.
    assert dist.sample_jax(jax.random.PRNGKey(0), 5).shape == (5, 2)


def test_immutable():
    dist = ring8()
    with pytest.raises(dataclasses.FrozenInstanceError):
        dist.std = 1.0
    with pytest.raises(ValueError):
        dist.modes[0, 0] = 3.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="std"):
        GaussianMixture("g", np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="std"):
        ring8(std=-1.0)
    with pytest.raises(ValueError, match="std"):
        grid25(std=float("nan"))
    with pytest.raises(TypeError, match="std"):
        GaussianMixture("g", np.zeros((2, 2)), "0.1")
    with pytest.raises(ValueError, match="modes"):
        GaussianMixture("g", np.zeros((3,)), 0.1)
    with pytest.raises(ValueError, match="modes"):
        GaussianMixture("g", np.zeros((0, 2)), 0.1)
    with pytest.raises(ValueError, match="modes"):
        GaussianMixture("g", np.full((2, 2), np.inf), 0.1)
    with pytest.raises(TypeError, match="name"):
        GaussianMixture("", np.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="radius"):
        ring8(radius=0.0)
    with pytest.raises(ValueError, match="spacing"):
        grid25(spacing=-2.0)
    with pytest.raises(ValueError, match="n_modes"):
        swissroll(n_modes=1)
    with pytest.raises(TypeError, match="n_modes"):
        swissroll(n_modes=2.5)
    dist = ring8()
    with pytest.raises(ValueError, match="n must be >= 1"):
        dist.sample(np.random.default_rng(0), 0)
    with pytest.raises(TypeError, match="n must be an int"):
        dist.sample(np.random.default_rng(0), 3.0)
    with pytest.raises(TypeError, match="rng"):
        dist.sample(0, 3)
    with pytest.raises(ValueError, match="n must be >= 1"):
        dist.sample_jax(jax.random.key(0), -1)
