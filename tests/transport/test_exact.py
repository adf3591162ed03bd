"""Exact W_p, plans and maps against POT's ot.emd / ot.emd2 (float64), under jax.jit; envelope gradients vs
finite differences of ot.emd2; LP duality of the returned potentials; the network simplex against HiGHS and POT."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gendl_jax.transport import barycentric_map, exact, netsimplex, transport_plan, wasserstein


@pytest.fixture
def rng():
    return np.random.default_rng()


def _weights(rng, n):
    w = rng.uniform(0.2, 1.0, size=n)
    return w / w.sum()


def _cost(x, y, p):
    return ot.dist(x, y, metric="euclidean") ** p


@pytest.mark.parametrize("p", [1, 2, 3])
def test_uniform_equal_sizes_matches_emd2(rng, p):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) * 1.5 + 0.5
    got = float(jax.jit(functools.partial(wasserstein, p=p))(x, y))
    u = np.full(40, 1 / 40)
    assert got**p == pytest.approx(ot.emd2(u, u, _cost(x, y, p)), rel=1e-5)


@pytest.mark.parametrize("p", [1, 2])
def test_weighted_unequal_sizes_matches_emd2(rng, p):
    x, y = rng.normal(size=(25, 2)), rng.uniform(-1, 2, size=(33, 2))
    a, b = _weights(rng, 25), _weights(rng, 33)
    got = float(jax.jit(functools.partial(wasserstein, p=p))(x, y, a, b))
    assert got**p == pytest.approx(ot.emd2(a, b, _cost(x, y, p)), rel=1e-5)


def test_plan_marginals_and_cost(rng):
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(28, 2))
    a, b = _weights(rng, 20), _weights(rng, 28)
    plan = np.asarray(jax.jit(transport_plan)(x, y, a, b), np.float64)
    assert plan.min() >= 0
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-6)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-6)
    C = _cost(x, y, 2)
    assert np.sum(plan * C) == pytest.approx(ot.emd2(a, b, C), rel=1e-5)


def test_uniform_plan_is_a_permutation_and_barycentric_map_follows_it(rng):
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 2
    plan = np.asarray(jax.jit(transport_plan)(x, y))
    ref = ot.emd(np.full(30, 1 / 30), np.full(30, 1 / 30), _cost(x, y, 2))
    np.testing.assert_allclose(plan, ref, atol=1e-7)  # unique optimum for generic points
    mapped = np.asarray(jax.jit(barycentric_map)(plan, y))
    np.testing.assert_allclose(mapped, y[np.argmax(ref, axis=1)], atol=1e-5)


def test_barycentric_map_of_a_split_plan_against_numpy(rng):
    plan = rng.uniform(size=(6, 9))
    y = rng.normal(size=(9, 3))
    want = (plan @ y) / plan.sum(1)[:, None]
    np.testing.assert_allclose(np.asarray(barycentric_map(plan, y)), want, rtol=1e-5, atol=1e-6)


def _fd(f, x, direction, h):
    return (f(x + h * direction) - f(x - h * direction)) / (2 * h)


@pytest.mark.parametrize("p", [1, 2])
def test_gradient_in_x_matches_finite_differences_of_emd2(rng, p):
    x, y = rng.normal(size=(15, 2)), rng.normal(size=(15, 2)) + 1
    u = np.full(15, 1 / 15)
    grad = np.asarray(jax.jit(jax.grad(lambda x: wasserstein(x, y, p=p) ** p))(x))
    for _ in range(3):
        direction = rng.normal(size=x.shape)
        want = _fd(lambda t: ot.emd2(u, u, _cost(t, y, p)), x, direction, 1e-6)
        assert float(np.sum(grad * direction)) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_gradient_in_y_matches_finite_differences_of_emd2(rng):
    x, y = rng.normal(size=(14, 3)), rng.normal(size=(19, 3))
    a, b = np.full(14, 1 / 14), np.full(19, 1 / 19)
    grad = np.asarray(jax.jit(jax.grad(lambda y: wasserstein(x, y) ** 2))(y))
    direction = rng.normal(size=y.shape)
    want = _fd(lambda t: ot.emd2(a, b, _cost(x, t, 2)), y, direction, 1e-6)
    assert float(np.sum(grad * direction)) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_gradient_of_w2_itself_chains_through_the_power(rng):
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 2)) + 1
    u = np.full(12, 1 / 12)
    grad = np.asarray(jax.jit(jax.grad(wasserstein))(x, y))
    direction = rng.normal(size=x.shape)
    want = _fd(lambda t: np.sqrt(ot.emd2(u, u, _cost(t, y, 2))), x, direction, 1e-6)
    assert float(np.sum(grad * direction)) == pytest.approx(want, rel=1e-3)


def test_gradient_in_weights_matches_finite_differences_of_emd2(rng):
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(13, 2))
    a, b = _weights(rng, 10), _weights(rng, 13)
    ga, gb = jax.jit(jax.grad(lambda a, b: wasserstein(x, y, a, b) ** 2, argnums=(0, 1)))(a, b)
    ga, gb = np.asarray(ga, np.float64), np.asarray(gb, np.float64)
    assert abs(ga.mean()) < 1e-6 and abs(gb.mean()) < 1e-6  # centred potentials
    C = _cost(x, y, 2)
    for _ in range(3):
        da, db = rng.normal(size=10), rng.normal(size=13)
        da -= da.mean()
        db -= db.mean()  # perturbations that keep both totals
        want = (ot.emd2(a + 1e-7 * da, b + 1e-7 * db, C) - ot.emd2(a - 1e-7 * da, b - 1e-7 * db, C)) / 2e-7
        assert float(ga @ da + gb @ db) == pytest.approx(want, rel=2e-3, abs=1e-6)


def test_assignment_duals_satisfy_lp_duality(rng):
    # Uniform weights passed explicitly take the assignment path; its potentials must be LP duals.
    n = 25
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    C = jnp.asarray(_cost(x, y, 2), jnp.float32)
    u = jnp.full((n,), 1.0 / n)
    f, g = jax.jit(jax.grad(lambda a, b: exact.transport_cost(C, a, b)[0], argnums=(0, 1)))(u, u)
    plan = np.asarray(exact.transport_cost(C, u, u)[1])
    slack = np.asarray(f)[:, None] + np.asarray(g)[None, :] - np.asarray(C)
    support = plan > 0
    # f_i + g_j - C_ij <= c everywhere, with equality on the plan's support (complementary slackness).
    assert slack.max() == pytest.approx(slack[support].min(), abs=1e-5)


def test_vmap_over_a_batch_of_clouds(rng):
    x, y = rng.normal(size=(3, 12, 2)), rng.normal(size=(3, 12, 2)) + 1
    got = np.asarray(jax.jit(jax.vmap(wasserstein))(x, y))
    u = np.full(12, 1 / 12)
    want = [np.sqrt(ot.emd2(u, u, _cost(a, b, 2))) for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": np.zeros((0, 2))}, "x must be a point cloud"),
        ({"y": np.zeros((4, 3))}, "same dimension"),
        ({"x": np.full((3, 2), np.nan)}, "x must be finite"),
        ({"a": np.array([0.5, 0.5, -0.0001])}, "a must be non-negative"),
        ({"a": np.array([0.2, 0.2, 0.2])}, "same total mass"),
        ({"b": np.ones(5)}, r"b must have shape \(4,\)"),
        ({"p": 0.9}, "p must be a finite number >= 1"),
        ({"method": "emd"}, "method must be one of"),
        ({"method": "sinkhorn"}, "epsilon must be given"),
        ({"method": "sinkhorn", "epsilon": 0.0}, "epsilon must be a finite number > 0"),
        ({"method": "sliced"}, "needs key="),
        ({"method": "1d"}, "needs points of dimension 1"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"x": np.zeros((3, 2)), "y": np.ones((4, 2))} | kwargs
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=match):
        wasserstein(x, y, **args)


def test_barycentric_map_rejects_empty_rows():
    with pytest.raises(ValueError, match="every row of plan must carry mass"):
        barycentric_map(np.array([[0.5, 0.0], [0.0, 0.0]]), np.ones((2, 2)))


_clouds = st.integers(0, 2**31 - 1)


@settings(max_examples=15, deadline=None)
@given(_clouds, st.sampled_from([1, 2]))
def test_metric_properties(seed, p):
    rng = np.random.default_rng(seed)
    x, y, z = rng.normal(size=(8, 2)), rng.normal(size=(8, 2)) + 1, rng.uniform(-2, 2, size=(8, 2))
    w = functools.partial(wasserstein, p=p)
    xy, yx, yz, xz = float(w(x, y)), float(w(y, x)), float(w(y, z)), float(w(x, z))
    assert xy == pytest.approx(yx, rel=1e-5)
    assert xz <= xy + yz + 1e-5
    assert float(w(x, x[::-1])) == pytest.approx(0.0, abs=1e-5)


# --- The network simplex (gendl_jax.transport.netsimplex) against HiGHS and POT, float64 -------------


def _highs(C, a, b):
    import scipy.optimize
    import scipy.sparse

    n, m = C.shape
    rows = scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m)))
    cols = scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m))
    res = scipy.optimize.linprog(
        C.ravel(), A_eq=scipy.sparse.vstack([rows, cols]), b_eq=np.concatenate([a, b]), method="highs"
    )
    assert res.status == 0, res.message
    return res.fun


def _check_lp_solution(C, a, b, res):
    """Primal feasibility (marginals to 1e-12, P >= 0), dual feasibility, complementary slackness, no gap."""
    tol = 1e-11 * max(np.abs(C).max(), 1.0)
    plan = res.plan
    assert plan.shape == C.shape and plan.min() >= 0
    np.testing.assert_allclose(plan.sum(1), a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plan.sum(0), b, rtol=0, atol=1e-12)
    assert np.count_nonzero(plan) <= C.shape[0] + C.shape[1] - 1  # a vertex
    slack = C - res.u[:, None] - res.v[None, :]
    assert slack.min() >= -tol
    assert np.abs(slack[plan > 0]).max(initial=0.0) <= tol
    assert res.cost == pytest.approx(np.sum(plan * C), rel=1e-12, abs=1e-15)
    assert a @ res.u + b @ res.v == pytest.approx(res.cost, rel=1e-10, abs=tol)  # strong duality


def _problem(rng, kind):
    n, m = (30, 30) if kind in ("uniform", "1d") else (23, 37)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    if kind == "general":
        a, b = _weights(rng, n), _weights(rng, m)
    elif kind == "zero_masses":
        a, b = _weights(rng, n), _weights(rng, m)
        a[rng.choice(n, 5, replace=False)] = 0
        b[rng.choice(m, 7, replace=False)] = 0
        a, b = a / a.sum(), b / b.sum()
    elif kind == "duplicates":
        x[: n // 2] = x[n // 2 : 2 * (n // 2)]
        y[::3] = x[0]
        a, b = _weights(rng, n), _weights(rng, m)
    elif kind == "ties":  # integer grid: many equal costs, many optimal plans
        x, y = rng.integers(0, 3, size=(n, 2)).astype(float), rng.integers(0, 3, size=(m, 2)).astype(float)
        a, b = rng.integers(1, 4, n).astype(float), rng.integers(1, 4, m).astype(float)
        a, b = a / a.sum(), b / b.sum()
    elif kind == "1d":
        x, y = rng.normal(size=(n, 1)), rng.standard_t(3, size=(m, 1))
    return x, y, a, b


@pytest.mark.parametrize("kind", ["uniform", "general", "zero_masses", "duplicates", "ties", "1d"])
@pytest.mark.parametrize("p", [1, 2])
def test_network_simplex_is_optimal_against_highs_and_pot(rng, kind, p):
    x, y, a, b = _problem(rng, kind)
    C = _cost(x, y, p)
    res = netsimplex.network_simplex(C, a, b)
    assert res.cost == pytest.approx(_highs(C, a, b), rel=1e-9, abs=1e-12)
    assert res.cost == pytest.approx(ot.emd2(a, b, C), rel=1e-9, abs=1e-12)
    _check_lp_solution(C, a, b, res)


def test_network_simplex_start_order_changes_nothing_but_speed(rng):
    x, y, a, b = _problem(rng, "general")
    C = _cost(x, y, 2)
    base = netsimplex.network_simplex(C, a, b)
    for order in [(rng.permutation(23), rng.permutation(37)), (np.argsort(x[:, 0]), np.argsort(y[:, 0]))]:
        res = netsimplex.network_simplex(C, a, b, order=order)
        assert res.cost == pytest.approx(base.cost, rel=1e-12)
        _check_lp_solution(C, a, b, res)
    # small blocks: many more pricing passes, same optimum
    assert netsimplex.network_simplex(C, a, b, block=1).cost == pytest.approx(base.cost, rel=1e-12)


def test_network_simplex_uniform_plan_is_an_exact_permutation(rng):
    n = 60
    C = _cost(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), 2)
    u = np.full(n, 1 / n)
    plan = netsimplex.network_simplex(C, u, u).plan
    assert set(np.unique(plan)) == {0.0, 1 / n}
    assert np.array_equal(np.sort(plan.argmax(1)), np.arange(n))


def test_network_simplex_1d_equals_sorting(rng):
    x, y = rng.normal(size=300), rng.standard_t(4, size=300) + 0.3
    u = np.full(300, 1 / 300)
    got = netsimplex.network_simplex(np.abs(x[:, None] - y[None, :]), u, u).cost
    assert got == pytest.approx(np.mean(np.abs(np.sort(x) - np.sort(y))), rel=1e-12)


def test_network_simplex_iteration_limit_raises_never_returns_a_wrong_answer(rng):
    C = _cost(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), 2)
    u = np.full(40, 1 / 40)
    with pytest.raises(RuntimeError, match="max_iter=3"):
        netsimplex.network_simplex(C, u, u, max_iter=3)


@pytest.mark.parametrize(
    "cost, a, b, match",
    [
        (np.ones((2, 3)), np.ones(3) / 3, np.ones(3) / 3, "cost must have shape"),
        (np.ones((2, 2)), np.array([1.5, -0.5]), np.ones(2) / 2, "a must hold finite non-negative"),
        (np.ones((2, 2)), np.zeros(2), np.ones(2) / 2, "a must have a positive total"),
        (np.array([[1.0, np.inf], [0, 1]]), np.ones(2) / 2, np.ones(2) / 2, "cost must be finite"),
    ],
)
def test_network_simplex_bad_input(cost, a, b, match):
    with pytest.raises(ValueError, match=match):
        netsimplex.network_simplex(cost, a, b)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 9),
    st.integers(1, 9),
    st.booleans(),
)
def test_network_simplex_property_random_lps_with_ties_and_zeros(seed, n, m, integer_costs):
    rng = np.random.default_rng(seed)
    C = rng.integers(0, 4, size=(n, m)).astype(float) if integer_costs else rng.normal(size=(n, m))
    a, b = rng.integers(0, 3, n).astype(float), rng.integers(0, 3, m).astype(float)
    a[0] += 1.0
    b[-1] += 1.0
    a, b = a / a.sum(), b / b.sum()
    res = netsimplex.network_simplex(C, a, b)
    assert res.cost == pytest.approx(_highs(C, a, b), rel=1e-9, abs=1e-12)
    _check_lp_solution(C, a, b, res)


@pytest.mark.parametrize("p", [1, 2])
def test_gradient_in_x_with_general_weights_under_jit_matches_finite_differences(rng, p):
    x, y = rng.normal(size=(17, 2)), rng.normal(size=(24, 2)) + 1
    a, b = _weights(rng, 17), _weights(rng, 24)
    grad = np.asarray(jax.jit(jax.grad(lambda x: wasserstein(x, y, a, b, p=p) ** p))(x), np.float64)
    for _ in range(3):
        direction = rng.normal(size=x.shape)
        want = _fd(lambda t: netsimplex.network_simplex(_cost(t, y, p), a, b).cost, x, direction, 1e-6)
        assert float(np.sum(grad * direction)) == pytest.approx(want, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("p", [1, 2])
def test_uniform_above_the_hungarian_size_takes_the_network_simplex_under_jit(rng, p):
    n = exact._HUNGARIAN_MAX_N + 50
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3)) + 0.5
    C = _cost(x, y, p)
    u = np.full(n, 1 / n)
    got = float(jax.jit(functools.partial(wasserstein, p=p))(x, y))
    assert got**p == pytest.approx(ot.emd2(u, u, C), rel=1e-5)
    plan = np.asarray(jax.jit(transport_plan)(x, y))
    np.testing.assert_allclose(plan, ot.emd(u, u, _cost(x, y, 2)), atol=1e-7)  # unique optimum: a permutation
    grad = np.asarray(jax.jit(jax.grad(lambda x: wasserstein(x, y, p=p) ** p))(x), np.float64)
    direction = rng.normal(size=x.shape)
    want = _fd(lambda t: ot.emd2(u, u, _cost(t, y, p)), x, direction, 1e-6)
    assert float(np.sum(grad * direction)) == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_network_simplex_reads_float32_costs_exactly(rng):
    x, y, a, b = _problem(rng, "general")
    C32 = _cost(x, y, 2).astype(np.float32)
    r32, r64 = netsimplex.network_simplex(C32, a, b), netsimplex.network_simplex(C32.astype(np.float64), a, b)
    assert r32.cost == r64.cost and r32.iterations == r64.iterations
    np.testing.assert_array_equal(r32.plan, r64.plan)
    np.testing.assert_array_equal(r32.u, r64.u)


def test_network_simplex_rejects_an_order_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="row_order must be a permutation"):
        netsimplex.network_simplex(np.ones((3, 2)), np.ones(3) / 3, np.ones(2) / 2, order=([0, 0, 1], [1, 0]))
