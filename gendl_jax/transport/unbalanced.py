"""Unbalanced entropic optimal transport (ott-jax): KL penalties on the marginals instead of constraints.

    UOT(a, b) = min_{P >= 0}  <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)

with C_ij = ||x_i - y_j||^p and KL the generalised Kullback-Leibler divergence between non-negative arrays,
KL(p | q) = sum p log(p / q) - sum p + sum q (0 log 0 = 0). ``reg_m`` is rho_a = rho_b, or a pair
(rho_a, rho_b); rho = inf keeps that marginal a hard constraint (both inf: balanced Sinkhorn). The totals of
a and b may differ: that is the point.

Reference measure (``reg_type``, POT's names): "kl" (default) regularises with eps KL(P | a b^T) as above;
"entropy" with eps (sum P log P - sum P), i.e. KL(P | 1 1^T) up to the constant n m. The two give the same
plan when both marginals are hard, different plans otherwise: with "entropy" the plan's mass depends on the
number of points (the reference 1 1^T has mass n m), with "kl" it does not.

Solver: ott-jax's log-domain Sinkhorn on ``LinearProblem(geom, a, b, tau_a, tau_b)``, tau = rho / (rho + eps),
with an absolute ``epsilon`` (ott's default, 0.05 x std(cost), changes between minibatches). A trap of
ott-jax 0.6.0: its unbalanced Sinkhorn solves the "entropy" problem (its plan is exp((f + g - C) / eps),
measured equal to POT's ``reg_type="entropy"`` plan to 2e-7), although its docstrings write KL(P | a b^T);
its ``reg_ot_cost`` then matches neither objective. Here "kl" is solved by ott on the shifted cost
C_ij - eps log a_i - eps log b_j (the two problems differ by exactly that linear term and a constant), and
the value is our own dual objective (below), not ott's ``reg_ot_cost``. Sinkhorn never raises when it
stops before ``threshold``: read ``converged``.

Value (``return_cost="total"``): the objective at the solution, computed as the dual objective
    D(f, g) = -rho_a <a, exp(-f / rho_a) - 1> - rho_b <b, exp(-g / rho_b) - 1> - eps (sum(P) - sum(R))
with P = R exp((f + g - C) / eps), R = a b^T for "kl" (R = 1 1^T and no sum(R) term for "entropy"), and
-rho <a, exp(-f / rho) - 1> read as <a, f> for rho = inf. At the optimum D equals the primal objective; with
f, g held fixed (Danskin's theorem) its gradients are <P, dC/dx> in the points and the dual terms in a, b.

Against POT 0.9.7: the plans are ``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg=epsilon, reg_m=reg_m,
reg_type=reg_type)``; ``return_cost="linear"`` is ``sinkhorn_unbalanced2(..., returnCost="linear")`` = <P, C>.
POT's ``returnCost="total"`` evaluates the KL terms without their mass parts (``nx.kl_div(..., mass=False)``):
for "kl" it is smaller than ours by eps (sum(a) sum(b) - m) + rho_a (sum(a) - m) + rho_b (sum(b) - m),
m = sum(P) (a rho = inf term dropped); our value is the minimised objective.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from gendl_jax.transport import checks, costs, entropic

__all__ = ["REG_TYPES", "RETURN_COSTS", "check_reg_m", "solve_unbalanced", "unbalanced_plan", "unbalanced_sinkhorn"]

RETURN_COSTS = ("total", "linear")
REG_TYPES = ("kl", "entropy")


def check_reg_m(reg_m) -> tuple[float, float]:
    """``reg_m`` as (rho_a, rho_b): a number > 0 (``inf`` allowed) for both marginals, or a pair of them."""
    pair = tuple(reg_m) if isinstance(reg_m, (tuple, list, np.ndarray)) else (reg_m, reg_m)
    if len(pair) != 2:
        raise ValueError(f"reg_m must be a number > 0 or a pair (reg_m_a, reg_m_b), got {len(pair)} values")
    out = []
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"reg_m must be a number > 0 (inf for a hard marginal) or a pair of them, got {reg_m!r}")
        if not value > 0:  # also rejects NaN
            raise ValueError(f"reg_m must be > 0 (inf for a hard marginal constraint), got {reg_m!r}")
        out.append(float(value))
    return out[0], out[1]


def _tau(rho: float, epsilon: float) -> float:
    return 1.0 if math.isinf(rho) else rho / (rho + epsilon)


def _prepare(x, y, a, b, p, epsilon, reg_m, reg_type, normalize):
    p = checks.check_p(p)
    x = checks.check_points(x, "x")
    y = checks.check_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got x {x.shape} and y {y.shape}")
    epsilon = checks.check_epsilon(epsilon)
    rho_a, rho_b = check_reg_m(reg_m)
    if reg_type not in REG_TYPES:
        raise ValueError(f"reg_type must be one of {REG_TYPES}, got {reg_type!r}")
    dtype = jnp.result_type(x, y)
    x, y = x.astype(dtype), y.astype(dtype)
    n, m = x.shape[0], y.shape[0]
    a = checks.check_weights(a, n, "a", normalize)
    b = checks.check_weights(b, m, "b", normalize)
    if math.isinf(rho_a) and math.isinf(rho_b) and not normalize:
        checks.check_same_mass(a, b, n, m)  # both marginals hard: balanced transport
    a = checks.uniform(n, dtype) if a is None else a.astype(dtype)
    b = checks.uniform(m, dtype) if b is None else b.astype(dtype)
    return x, y, a, b, p, epsilon, (rho_a, rho_b)


def _safe_log(w):
    return jnp.log(jnp.where(w > 0, w, 1.0))


def solve_unbalanced(
    x, y, a, b, *, p: float, epsilon: float, reg_m, reg_type: str, threshold: float, max_iterations: int
):
    """ott-jax Sinkhorn for the unbalanced problem of ``reg_type`` on ||x_i - y_j||^p (no input checks).

    a (n,), b (m,): masses; ``reg_m``: (rho_a, rho_b). Returns ott's ``SinkhornOutput``: ``out.matrix`` is the
    plan P, ``out.f`` / ``out.g`` the potentials of P = R exp((f + g - C) / eps) (R = a b^T for "kl", 1 for
    "entropy"), ``out.converged`` whether the L1 norm of the dual gradient (P 1 - a exp(-f / rho_a) and
    P^T 1 - b exp(-g / rho_b), a hard side's residual P 1 - a) went under ``threshold``. Do not use
    ``out.reg_ot_cost`` (see the module docstring); ``dual_objective`` gives the value.
    """
    rho_a, rho_b = reg_m
    if reg_type == "entropy":
        geom = entropic.make_geometry(x, y, p, epsilon)
    else:
        # eps KL(P | a b^T) = eps KL(P | 1) - eps <P, log a_i + log b_j> + constant: ott's problem on a shifted cost.
        # A zero mass keeps its log at 0 here: ott gives its row (column) the potential -inf, so no plan mass.
        shift = _safe_log(a)[:, None] + _safe_log(b)[None, :]
        geom = geometry.Geometry(cost_matrix=costs.cost_matrix(x, y, p) - epsilon * shift, epsilon=epsilon)
    problem = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=_tau(rho_a, epsilon), tau_b=_tau(rho_b, epsilon))
    return ott_sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)(problem)


def _marginal_term(w, potential, rho):
    """-rho <w, exp(-h / rho) - 1> (<w, h> for rho = inf); zero-mass entries (potential -inf) contribute 0."""
    positive = w > 0
    h = jnp.where(positive, potential, 0.0)
    term = w * h if math.isinf(rho) else -rho * w * jnp.expm1(-h / rho)
    return jnp.sum(jnp.where(positive, term, 0.0))


def dual_objective(out, cost, a, b, *, epsilon: float, reg_m, reg_type: str):
    """The dual objective D(f, g) at ott's potentials, held fixed (Danskin): differentiable in ``cost`` (n, m),
    ``a`` and ``b``. Equals the primal objective of the module docstring at convergence."""
    rho_a, rho_b = reg_m
    f, g = jax.lax.stop_gradient(out.f), jax.lax.stop_gradient(out.g)
    exponent = (f[:, None] + g[None, :] - cost) / epsilon
    if reg_type == "kl":
        plan_mass = jnp.sum(a[:, None] * b[None, :] * jnp.exp(exponent))
        entropic_term = -epsilon * (plan_mass - jnp.sum(a) * jnp.sum(b))
    else:
        entropic_term = -epsilon * jnp.sum(jnp.exp(exponent))
    return _marginal_term(a, f, rho_a) + _marginal_term(b, g, rho_b) + entropic_term


def unbalanced_sinkhorn(
    x,
    y,
    a=None,
    b=None,
    *,
    epsilon: float,
    reg_m,
    p: float = 2,
    reg_type: str = "kl",
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    return_cost: str = "total",
    normalize: bool = False,
):
    """Unbalanced entropic OT between weighted point clouds (ott-jax), and whether Sinkhorn converged.

    Solves  min_{P >= 0} <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b),
    C_ij = ||x_i - y_j||^p, with the generalised KL(p | q) = sum p log(p / q) - sum p + sum q
    (``reg_type="entropy"``: eps (sum P log P - sum P) in place of eps KL(P | a b^T)).

    Args:
      x: (n, d) points; y: (m, d) points.
      a: (n,) and b: (m,) non-negative masses with positive totals; None means uniform 1/n (1/m). The totals
        may differ (unless both ``reg_m`` are inf); ``normalize=True`` divides each by its total.
      epsilon: absolute entropic regularisation (cost units), > 0; required.
      reg_m: marginal penalty rho > 0 on both sides, or a pair (rho_a, rho_b); ``inf`` makes that marginal a
        hard constraint (``(inf, rho)``: semi-relaxed; ``inf``: balanced Sinkhorn).
      p: order of the ground cost, >= 1.
      reg_type: "kl" (reference a b^T, POT's default) or "entropy" (reference 1 1^T, ott-jax's own).
      threshold: stop when the L1 norm of the dual gradient (the marginal residuals, in mass units) is below
        it; in float32 it cannot go much below 1e-6 x the total mass.
      max_iterations: Sinkhorn iterations at most.
      return_cost: "total": the objective above at the solution (POT's ``returnCost="total"`` plus KL's
        mass terms, see the module docstring); "linear": its transport part <P, C> (POT's default).

    Returns:
      ``(value, converged)``. Gradients: "total" by Danskin's theorem (potentials fixed): <P, dC/dx> in the
      points, the dual terms in a and b; "linear" through the plan by ott's implicit differentiation. Both
      assume convergence. A point of zero mass carries no plan and gets a zero gradient in its position; the
      gradient w.r.t. a mass that is exactly 0 is not meaningful.

    Agrees with POT 0.9.7 ``ot.unbalanced.sinkhorn_unbalanced2(a, b, ot.dist(x, y), epsilon, reg_m,
    reg_type=reg_type)`` (see tests/transport/test_unbalanced.py for the measured agreement).
    """
    if return_cost not in RETURN_COSTS:
        raise ValueError(f"return_cost must be one of {RETURN_COSTS}, got {return_cost!r}")
    x, y, a, b, p, epsilon, reg_m = _prepare(x, y, a, b, p, epsilon, reg_m, reg_type, normalize)
    out = solve_unbalanced(
        x,
        y,
        a,
        b,
        p=p,
        epsilon=epsilon,
        reg_m=reg_m,
        reg_type=reg_type,
        threshold=threshold,
        max_iterations=max_iterations,
    )
    cost = costs.cost_matrix(x, y, p)
    if return_cost == "linear":
        return jnp.sum(out.matrix * cost), out.converged
    return dual_objective(out, cost, a, b, epsilon=epsilon, reg_m=reg_m, reg_type=reg_type), out.converged


def unbalanced_plan(
    x,
    y,
    a=None,
    b=None,
    *,
    epsilon: float,
    reg_m,
    p: float = 2,
    reg_type: str = "kl",
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    normalize: bool = False,
):
    """``(plan, converged)``: the (n, m) plan P of ``unbalanced_sinkhorn``; its marginals are a and b only on a
    side whose reg_m is inf."""
    x, y, a, b, p, epsilon, reg_m = _prepare(x, y, a, b, p, epsilon, reg_m, reg_type, normalize)
    out = solve_unbalanced(
        x,
        y,
        a,
        b,
        p=p,
        epsilon=epsilon,
        reg_m=reg_m,
        reg_type=reg_type,
        threshold=threshold,
        max_iterations=max_iterations,
    )
    return out.matrix, out.converged
