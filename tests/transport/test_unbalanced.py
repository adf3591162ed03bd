"""Unbalanced Sinkhorn (ott-jax) against POT's ot.unbalanced solvers and a float64 evaluation of the objective,
under jax.jit on fresh random inputs with unequal masses; the balanced limit; gradients against finite
differences of the float64 POT objective; bad inputs."""

import functools
import math

import jax
import numpy as np
import ot
import pytest

from gendl_jax.transport import transport_plan, unbalanced_sinkhorn, wasserstein

INF = math.inf


@pytest.fixture
def rng():
    return np.random.default_rng()


def _masses(rng, n, total):
    w = rng.uniform(0.2, 1.0, size=n)
    return total * w / w.sum()


def _kl(p, q):
    """Generalised KL(p | q) = sum p log(p / q) - sum p + sum q, in float64."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0)) - p.sum() + q.sum()


def _objective(plan, cost, a, b, eps, reg_m, reg_type):
    """<P, C> + eps KL(P | a b^T) (or eps (sum P log P - sum P)) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b), float64."""
    rho_a, rho_b = reg_m if isinstance(reg_m, tuple) else (reg_m, reg_m)
    if reg_type == "kl":
        value = np.sum(plan * cost) + eps * _kl(plan, np.outer(a, b))
    else:
        value = np.sum(plan * cost) + eps * (_kl(plan, np.ones_like(plan)) - plan.size)
    if rho_a != INF:
        value += rho_a * _kl(plan.sum(1), a)
    if rho_b != INF:
        value += rho_b * _kl(plan.sum(0), b)
    return value


def _pot(a, b, cost, eps, reg_m, reg_type):
    # POT's default generalised Sinkhorn-Knopp; its "sinkhorn_stabilized" variant was measured to drift (plan
    # mass 1e9 at eps = 0.1, reg_m = 1) on these inputs, where this one agrees with an independent float64
    # log-domain solver to 1e-15.
    return ot.unbalanced.sinkhorn_unbalanced(
        a, b, cost, eps, reg_m, reg_type=reg_type, stopThr=1e-13, numItermax=100_000
    )


# (reg_type, epsilon, reg_m): both relaxed, strongly relaxed, semi-relaxed, an unequal pair, and ott's own
# reference measure ("entropy"). Measured on 100 draws each (float32, threshold 1e-5): plan error <= 3.7e-5 x its
# largest entry (1e-5 for "kl"), <P, C> rel <= 2.9e-5 (1e-5 for "kl"), the total rel <= 4.8e-6 (2.7e-7 for "kl").
CASES = [
    ("kl", 0.1, 1.0, 2),
    ("kl", 0.5, 0.1, 2),
    ("kl", 0.2, (INF, 0.5), 2),
    ("kl", 0.2, (2.0, 0.3), 1),
    ("entropy", 0.1, (0.5, INF), 2),
]


@functools.partial(jax.jit, static_argnames=("kwargs",))
def _plan_total_linear(x, y, a, b, kwargs):
    """One compilation for the plan (through transport_plan), the total and the linear value."""
    kwargs = dict(kwargs)
    plan, converged = transport_plan(x, y, a, b, method="unbalanced", **kwargs)
    total, converged_total = unbalanced_sinkhorn(x, y, a, b, **kwargs)
    linear, _ = unbalanced_sinkhorn(x, y, a, b, return_cost="linear", **kwargs)
    return plan, converged & converged_total, total, linear


@pytest.mark.parametrize(("reg_type", "eps", "reg_m", "p"), CASES)
def test_plan_and_values_match_pot_with_unequal_masses(rng, reg_type, eps, reg_m, p):
    n, m = 40, 30
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.5
    a, b = _masses(rng, n, rng.uniform(1.0, 3.0)), _masses(rng, m, rng.uniform(0.3, 1.0))  # unequal totals
    kwargs = {"epsilon": eps, "reg_m": reg_m, "p": p, "reg_type": reg_type, "threshold": 1e-5, "max_iterations": 20_000}
    plan, converged, total, linear = _plan_total_linear(x, y, a, b, tuple(kwargs.items()))
    assert bool(converged)

    cost = ot.dist(x, y, metric="euclidean") ** p
    ref = _pot(a, b, cost, eps, reg_m, reg_type)
    np.testing.assert_allclose(np.asarray(plan, np.float64), ref, rtol=0, atol=2e-4 * ref.max())
    want_linear = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, cost, eps, reg_m, reg_type=reg_type, stopThr=1e-13, numItermax=100_000, returnCost="linear"
    )
    assert float(linear) == pytest.approx(want_linear, rel=2e-4)
    want_total = _objective(ref, cost, a, b, eps, reg_m, reg_type)
    assert float(total) == pytest.approx(want_total, rel=1e-4, abs=1e-6)
    if reg_type == "kl":  # POT's "total" leaves out KL's mass terms: the documented offset
        pot_total = ot.unbalanced.sinkhorn_unbalanced2(
            a, b, cost, eps, reg_m, reg_type="kl", stopThr=1e-13, numItermax=100_000, returnCost="total"
        )
        rho_a, rho_b = reg_m if isinstance(reg_m, tuple) else (reg_m, reg_m)
        mass = ref.sum()
        offset = eps * (a.sum() * b.sum() - mass)
        offset += (rho_a * (a.sum() - mass) if rho_a != INF else 0) + (rho_b * (b.sum() - mass) if rho_b != INF else 0)
        assert float(total) == pytest.approx(pot_total + offset, rel=1e-4, abs=1e-6)


def test_reg_m_to_infinity_is_balanced_sinkhorn(rng):
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(20, 2)) + 1.0
    kwargs = {"epsilon": 0.2, "threshold": 1e-5, "max_iterations": 20_000}

    @jax.jit
    def values(x, y):
        w2 = wasserstein(x, y, method="sinkhorn", **kwargs)
        linear = [
            unbalanced_sinkhorn(x, y, reg_m=reg_m, reg_type=reg_type, return_cost="linear", **kwargs)
            for reg_type, reg_m in [("kl", 100.0), ("kl", 1000.0), ("kl", INF), ("entropy", INF)]
        ]
        total = unbalanced_sinkhorn(x, y, reg_m=INF, **kwargs)
        return w2, linear, total

    (w2, w2_converged), linear, (total, total_converged) = values(x, y)
    assert bool(w2_converged) and bool(total_converged) and all(bool(c) for _, c in linear)
    gaps = [float(v) / float(w2) ** 2 - 1 for v, _ in linear]
    # The unbalanced plan approaches the balanced one like 1 / reg_m. Measured on 100 draws: gap(100) / gap(1000)
    # in [8.9, 9.7], |gap(1000)| <= 1.3e-2, |gap(inf)| <= 7.7e-6 (float32 Sinkhorn at threshold 1e-5).
    assert abs(gaps[1]) < 0.05 and 5 < gaps[0] / gaps[1] < 20
    assert abs(gaps[2]) < 2e-5 and abs(gaps[3]) < 2e-5  # reg_m = inf: balanced Sinkhorn, either reference
    # The balanced total is <P, C> + eps KL(P | a b^T) at the balanced plan (ott's reg_ot_cost).
    u, v = np.full(30, 1 / 30), np.full(20, 1 / 20)
    ref = ot.sinkhorn(u, v, ot.dist(x, y), 0.2, method="sinkhorn_log", stopThr=1e-12, numItermax=100_000)
    assert float(total) == pytest.approx(_objective(ref, ot.dist(x, y), u, v, 0.2, INF, "kl"), rel=1e-5)


def test_mass_is_created_or_destroyed_as_the_penalty_allows(rng):
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(25, 2))
    a, b = _masses(rng, 20, 3.0), _masses(rng, 25, 0.5)

    @jax.jit
    def plans(x, y, a, b):
        kwargs = {"method": "unbalanced", "epsilon": 0.5, "threshold": 1e-5, "max_iterations": 20_000}
        few = transport_plan(x, y, a, b, method="unbalanced", epsilon=1e-3, reg_m=1.0, threshold=1e-9, max_iterations=3)
        return [transport_plan(x, y, a, b, reg_m=reg_m, **kwargs) for reg_m in (0.05, 1.0, 50.0, (INF, 1.0))], few

    out, (_, few_converged) = plans(x, y, a, b)
    assert not bool(few_converged)  # Sinkhorn does not raise when it stops early: converged says so
    assert all(bool(c) and np.all(np.isfinite(np.asarray(p))) for p, c in out)
    masses = [float(p.sum()) for p, _ in out[:3]]
    assert masses[0] < masses[1] < masses[2] < 3.0  # more mass kept as the marginals harden
    np.testing.assert_allclose(np.asarray(out[3][0]).sum(1), a, rtol=1e-4)  # the hard side keeps its marginal


def _fd(f, z, direction, h):
    return (f(z + h * direction) - f(z - h * direction)) / (2 * h)


def test_gradient_in_x_matches_finite_differences_of_pot(rng):
    x, y = rng.normal(size=(15, 2)), rng.normal(size=(20, 2)) + 0.5
    a, b = _masses(rng, 15, 1.5), _masses(rng, 20, 1.0)
    eps, reg_m = 0.3, (1.0, 2.0)
    fn = functools.partial(unbalanced_sinkhorn, epsilon=eps, reg_m=reg_m, threshold=1e-6, max_iterations=20_000)
    # "total" by Danskin's theorem, "linear" through the plan (ott's implicit differentiation).
    grads = jax.jit(
        lambda x: (
            jax.grad(lambda x: fn(x, y, a, b)[0])(x),
            jax.grad(lambda x: fn(x, y, a, b, return_cost="linear")[0])(x),
        )
    )(x)

    def reference(x, return_cost):
        cost = ot.dist(x, y)
        plan = _pot(a, b, cost, eps, reg_m, "kl")
        return _objective(plan, cost, a, b, eps, reg_m, "kl") if return_cost == "total" else np.sum(plan * cost)

    for grad, return_cost in zip(grads, ["total", "linear"]):
        for _ in range(2):
            direction = rng.normal(size=x.shape)
            want = _fd(lambda z: reference(z, return_cost), x, direction, 1e-5)
            assert float(np.sum(np.asarray(grad, np.float64) * direction)) == pytest.approx(want, rel=2e-3, abs=1e-5)


def test_gradient_in_weights_matches_finite_differences_of_pot(rng):
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(18, 2))
    a, b = _masses(rng, 12, 1.0), _masses(rng, 18, 0.6)
    eps, reg_m = 0.3, 0.8
    fn = functools.partial(unbalanced_sinkhorn, epsilon=eps, reg_m=reg_m, threshold=1e-6, max_iterations=20_000)
    ga, gb = jax.jit(jax.grad(lambda a, b: fn(x, y, a, b)[0], argnums=(0, 1)))(a, b)
    cost = ot.dist(x, y)

    def reference(a, b):
        return _objective(_pot(a, b, cost, eps, reg_m, "kl"), cost, a, b, eps, reg_m, "kl")

    da, db = rng.normal(size=12) * a, rng.normal(size=18) * b
    want_a = _fd(lambda t: reference(t, b), a, da, 1e-5)
    want_b = _fd(lambda t: reference(a, t), b, db, 1e-5)
    assert float(np.dot(ga, da)) == pytest.approx(want_a, rel=2e-3, abs=1e-5)
    assert float(np.dot(gb, db)) == pytest.approx(want_b, rel=2e-3, abs=1e-5)


X, Y = np.zeros((4, 2)), np.ones((5, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epsilon": 0.0, "reg_m": 1.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon": -1.0, "reg_m": 1.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon": None, "reg_m": 1.0}, ValueError, "epsilon must be given"),
        ({"epsilon": 0.1, "reg_m": 0.0}, ValueError, "reg_m must be > 0"),
        ({"epsilon": 0.1, "reg_m": (1.0, -2.0)}, ValueError, "reg_m must be > 0"),
        ({"epsilon": 0.1, "reg_m": float("nan")}, ValueError, "reg_m must be > 0"),
        ({"epsilon": 0.1, "reg_m": (1.0, 2.0, 3.0)}, ValueError, "reg_m must be a number > 0 or a pair"),
        ({"epsilon": 0.1, "reg_m": "big"}, TypeError, "reg_m must be a number"),
        ({"epsilon": 0.1, "reg_m": 1.0, "a": np.array([0.5, -0.1, 0.3, 0.3])}, ValueError, "a must be non-negative"),
        ({"epsilon": 0.1, "reg_m": 1.0, "b": np.zeros(5)}, ValueError, "b must have a positive total mass"),
        ({"epsilon": 0.1, "reg_m": 1.0, "b": np.ones(4)}, ValueError, r"b must have shape \(5,\)"),
        ({"epsilon": 0.1, "reg_m": 1.0, "y": np.ones((5, 3))}, ValueError, "x and y must have the same dimension"),
        (
            {"epsilon": 0.1, "reg_m": 1.0, "x": np.zeros((0, 2))},
            ValueError,
            r"x must be a point cloud of shape \(n, d\)",
        ),
        ({"epsilon": 0.1, "reg_m": INF, "b": np.full(5, 0.5)}, ValueError, "same total mass"),
        ({"epsilon": 0.1, "reg_m": 1.0, "reg_type": "l2"}, ValueError, "reg_type must be one of"),
        ({"epsilon": 0.1, "reg_m": 1.0, "return_cost": "dual"}, ValueError, "return_cost must be one of"),
        ({"epsilon": 0.1, "reg_m": 1.0, "p": 0.5}, ValueError, "p must be a finite number >= 1"),
    ],
)
def test_bad_input_raises(kwargs, error, match):
    kwargs = dict(kwargs)
    x, y = kwargs.pop("x", X), kwargs.pop("y", Y)
    with pytest.raises(error, match=match):
        unbalanced_sinkhorn(x, y, **kwargs)


def test_transport_plan_unbalanced_needs_reg_m():
    with pytest.raises(ValueError, match="method='unbalanced' needs reg_m="):
        transport_plan(X, Y, method="unbalanced", epsilon=0.1)
