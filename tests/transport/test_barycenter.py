"""Free-support W2 barycenter against POT's ot.lp.free_support_barycenter and
ot.bregman.free_support_sinkhorn_barycenter from the same start, the 1-D closed form (quantile averaging) on
fresh random samples, the Gaussian closed form, translates; gradients against finite differences; bad inputs.
Everything under jax.jit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
import scipy.optimize
from scipy.stats import norm

from gendl_jax.transport import barycenter


@pytest.fixture
def rng():
    return np.random.default_rng()


def _measures(rng, sizes, d):
    return [rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0) + 2.0 * rng.normal(size=d) for n in sizes]


def test_exact_matches_pot_free_support_barycenter(rng):
    sets = _measures(rng, (20, 30, 25), 2)
    masses = [None, rng.dirichlet(np.ones(30)), None]
    weights = rng.dirichlet(np.ones(3))
    init = rng.normal(size=(15, 2))
    got = jax.jit(functools.partial(barycenter, n_support=15))(sets, weights, init=init, masses=masses)
    pot_masses = [np.full(len(y), 1 / len(y)) if m is None else m for y, m in zip(sets, masses)]
    # Same start, the same stopping rule (sum of squared displacements <= 1e-7) and iteration cap (100).
    want = ot.lp.free_support_barycenter(sets, pot_masses, init, weights=weights)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=1e-5)


def test_sinkhorn_matches_pot_free_support_sinkhorn_barycenter(rng):
    sets = _measures(rng, (20, 25), 2)
    masses = [rng.dirichlet(np.ones(20)), None]
    weights = rng.dirichlet(np.ones(2))
    init = rng.normal(size=(10, 2))
    fn = functools.partial(
        barycenter, n_support=10, method="sinkhorn", epsilon=1.0, threshold=1e-6, max_iterations=10_000,
        n_iterations=10, tolerance=0.0,
    )  # fmt: skip
    got = jax.jit(fn)(sets, weights, init=init, masses=masses)
    pot_masses = [masses[0], np.full(25, 1 / 25)]
    want = ot.bregman.free_support_sinkhorn_barycenter(
        sets, pot_masses, init, 1.0, weights=weights, numItermax=10, stopThr=0.0, numInnerItermax=100_000,
        method="sinkhorn_log",
    )  # fmt: skip
    # float32 log-domain Sinkhorn: the plan's relative error is about max|C| x 1e-7 / epsilon.
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=0, atol=1e-4)


def _quantile_bin_means(y, w, n_support):
    """n_support * integral over [r / n, (r + 1) / n] of the weighted empirical quantile function of (y, w)."""
    order = np.argsort(y)
    y, cum = y[order], np.concatenate([[0.0], np.cumsum(w[order])])
    cum /= cum[-1]
    edges = np.linspace(0.0, 1.0, n_support + 1)
    overlap = np.clip(
        np.minimum(cum[None, 1:], edges[1:, None]) - np.maximum(cum[None, :-1], edges[:-1, None]), 0, None
    )
    return n_support * overlap @ y


def test_1d_is_the_average_of_quantile_functions(rng):
    # In 1-D the W2 barycenter's quantile function is sum_k w_k Q_k; with n_support equal masses its points are
    # the averages of that function over the n_support equal-mass bins, reached in two updates from any start.
    sizes, n_support = (40, 55, 70), 25
    sets = [rng.normal(size=(n, 1)) * rng.uniform(0.5, 2) + rng.normal() * 3 for n in sizes]
    sets[2] = rng.exponential(size=(70, 1))  # not Gaussian: the closed form holds for any measures
    masses = [None, rng.dirichlet(np.ones(55)), None]
    weights = rng.dirichlet(np.ones(3))
    fn = jax.jit(functools.partial(barycenter, n_support=n_support))
    got = np.sort(np.asarray(fn(sets, weights, key=jax.random.key(int(rng.integers(2**31))), masses=masses))[:, 0])
    want = sum(
        w * _quantile_bin_means(y[:, 0], np.full(len(y), 1 / len(y)) if m is None else m, n_support)
        for w, y, m in zip(weights, sets, masses)
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_1d_gaussians_mean_and_std_are_the_weighted_averages(rng):
    # The W2 barycenter of N(m_k, s_k^2) is N(sum w_k m_k, (sum w_k s_k)^2). The inputs are Gaussian quantile
    # grids m_k + s_k Phi^-1((j + 1/2) / n_k) (no sampling noise). The mean is then exact (the grids are
    # symmetric; float32 rounding only). The std is lowered by the discretisation only: 50 equal-mass atoms of a
    # Gaussian have std 0.99735 s (closed form, sqrt of the mean square of n (phi(z_r) - phi(z_r+1))), and a
    # 1,000-point grid has std 0.99935 s: together under 0.35%, so the tolerance is 0.5%.
    means, stds, weights = rng.normal(size=3) * 3, rng.uniform(0.3, 2.0, size=3), rng.dirichlet(np.ones(3))
    sets = [m + s * norm.ppf((np.arange(n) + 0.5) / n)[:, None] for m, s, n in zip(means, stds, (1000, 1500, 2000))]
    fn = jax.jit(functools.partial(barycenter, n_support=50))
    got = np.asarray(fn(sets, weights, key=jax.random.key(int(rng.integers(2**31)))), np.float64)[:, 0]
    assert got.mean() == pytest.approx(np.dot(weights, means), abs=1e-4)
    assert got.std() == pytest.approx(np.dot(weights, stds), rel=5e-3)
    assert got.std() < np.dot(weights, stds)  # quantisation can only shrink it


def test_translates_give_the_weighted_translate(rng):
    # The plans to Y and to Y + t coincide (a translation adds row and column constants to the cost), so the
    # fixed point is Y + w_2 t, reached from any start.
    y = rng.normal(size=(20, 3))
    t = rng.normal(size=3) * 3
    weights = np.array([0.3, 0.7])
    fn = jax.jit(functools.partial(barycenter, n_support=20))
    got = np.asarray(fn([y, y + t], weights, key=jax.random.key(int(rng.integers(2**31)))), np.float64)
    want = y + weights[1] * t
    distances = np.linalg.norm(got[:, None] - want[None], axis=-1)
    rows, cols = scipy.optimize.linear_sum_assignment(distances)
    assert distances[rows, cols].max() < 1e-5


def test_gradients_hold_the_optimal_plans_fixed(rng):
    # Near generic inputs the exact plans are locally constant, so the fixed point X* = sum_k w_k n P_k Y_k is
    # locally linear in the points: d<X*, R>/dY_k = w_k n P_k^T R, checked with POT's float64 plans at X*. In the
    # weights, d<X*, R>/dw_k = <n P_k Y_k, R>, checked with POT's plans at X* and by finite differences
    # started at X* (started elsewhere, the path to the fixed point can cross a plan change).
    sets, n = _measures(rng, (12, 16), 2), 8
    weights, probe = rng.dirichlet(np.ones(2)), rng.normal(size=(n, 2))

    def value(sets, w, init):
        support = barycenter(sets, w, n_support=n, init=init)
        return jnp.sum(support * probe), support

    value_and_grad = jax.jit(jax.value_and_grad(value, argnums=(0, 1), has_aux=True))
    (_, support), (g_sets, g_w) = value_and_grad(sets, weights, rng.normal(size=(n, 2)))
    support = np.asarray(support, np.float64)
    for k, y in enumerate(sets):
        plan = ot.emd(np.full(n, 1 / n), np.full(len(y), 1 / len(y)), ot.dist(support, y))
        np.testing.assert_allclose(np.asarray(g_sets[k]), weights[k] * n * plan.T @ probe, atol=1e-5)
    # The same gradients when started at X* itself: they depend on the fixed point, not on the path to it.
    _, (g_sets_at_fixed_point, g_w_at_fixed_point) = value_and_grad(sets, weights, support)
    for got, want in zip([*g_sets_at_fixed_point, g_w_at_fixed_point], [*g_sets, g_w]):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)

    def plans(points):
        return [ot.emd(np.full(n, 1 / n), np.full(len(y), 1 / len(y)), ot.dist(points, y)) for y in sets]

    # The value is linear in w while the plans stay those at X*. A step of 1e-3 can cross a plan change (about
    # 1 draw in 200), so the step is the largest of 1e-3, 1e-4, 1e-5 whose two perturbed fixed points keep POT's
    # plans at X*; one must (the plans are locally constant at a generic X*).
    dw, at_fixed_point = np.array([1.0, -1.0]), plans(support)  # dw stays on the simplex
    for h in (1e-3, 1e-4, 1e-5):
        ends = [value_and_grad(sets, weights + s * h * dw, support)[0] for s in (1, -1)]
        if all(
            np.array_equal(a > 0, b > 0)
            for value_, end in ends
            for a, b in zip(plans(np.asarray(end, np.float64)), at_fixed_point)
        ):
            break
    else:
        pytest.fail("every step changed the plans at X*")
    fd = (float(ends[0][0]) - float(ends[1][0])) / (2 * h)
    assert float(np.dot(g_w, dw)) == pytest.approx(fd, abs=1e-2 * np.linalg.norm(g_w) * np.linalg.norm(dw))
    # And the closed form with POT's plans at X*: d<X*, R>/dw_k = <n P_k Y_k, R>.
    want_w = [n * np.sum((plan @ y) * probe) for plan, y in zip(at_fixed_point, sets)]
    np.testing.assert_allclose(np.asarray(g_w), want_w, rtol=1e-4, atol=1e-4)


def test_shape_dtype_key_normalize_and_more_support_points_than_data(rng):
    sets = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(2, 2)).astype(np.float32)]
    fn = jax.jit(functools.partial(barycenter, n_support=7, normalize=True))  # 7 > 5 points: with replacement
    key = jax.random.key(int(rng.integers(2**31)))
    masses = [np.array([2.0, 1.0, 1.0]), None]  # normalize=True divides by the total 4
    out = fn(sets, key=key, masses=masses)
    assert out.shape == (7, 2) and out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fn(sets, key=key, masses=masses)))
    # The support's mean is the weighted mean of the measures' means (each plan has the measure as marginal).
    want = 0.5 * (np.array([0.5, 0.25, 0.25]) @ sets[0]) + 0.5 * sets[1].mean(0)
    np.testing.assert_allclose(np.asarray(out).mean(0), want, atol=1e-5)


Y2 = [np.zeros((4, 2)), np.ones((5, 2))]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        (([],), {}, ValueError, "point_sets must hold at least one point cloud"),
        ((np.zeros((3, 2)),), {}, TypeError, "point_sets must be a list"),
        (([np.zeros((4, 2)), np.ones((5, 3))],), {}, ValueError, "every point set must have the same dimension"),
        (([np.zeros((0, 2))],), {}, ValueError, r"point_sets\[0\] must be a point cloud"),
        ((Y2, [1.2, -0.2]), {}, ValueError, "weights must be non-negative"),
        ((Y2, [0.5, 0.4]), {}, ValueError, "weights .*must sum to 1"),
        ((Y2, [1.0]), {}, ValueError, r"weights must have shape \(2,\)"),
        ((Y2,), {"n_support": 0}, ValueError, "n_support must be an integer >= 1"),
        ((Y2,), {"n_support": 2.5}, ValueError, "n_support must be an integer >= 1"),
        ((Y2,), {"key": None}, ValueError, "pass exactly one of key"),
        ((Y2,), {"init": np.zeros((3, 2))}, ValueError, "pass exactly one of key"),
        ((Y2,), {"key": None, "init": np.zeros((2, 2))}, ValueError, r"init must have shape \(n_support, d\)"),
        ((Y2,), {"method": "sliced"}, ValueError, "method must be one of"),
        ((Y2,), {"method": "sinkhorn"}, ValueError, "epsilon must be given"),
        ((Y2,), {"masses": [None]}, ValueError, "masses must be None or a list of 2"),
        ((Y2,), {"masses": [None, np.full(5, 0.3)]}, ValueError, r"masses\[1\] must sum to 1"),
        ((Y2,), {"masses": [np.array([0.5, 0.6, -0.1, 0.0]), None]}, ValueError, r"masses\[0\] must be non-negative"),
        ((Y2,), {"tolerance": -1.0}, ValueError, "tolerance must be a number >= 0"),
        ((Y2,), {"n_iterations": 0}, ValueError, "n_iterations must be an integer >= 1"),
    ],
)
def test_bad_input_raises(args, kwargs, error, match):
    kwargs = {"n_support": 3, "key": jax.random.key(0), **kwargs}
    with pytest.raises(error, match=match):
        barycenter(*args, **kwargs)
