"""Optimal transport: Wasserstein distances (exact, 1-D, Sinkhorn, sliced, Gaussian), unbalanced OT, plans, maps
and barycenters.

    wasserstein(x, y, a=None, b=None, *, p=2, method="exact")          -> W_p
    wasserstein(..., method="sinkhorn", epsilon=0.1)                   -> (W_p estimate, converged)
    wasserstein(..., method="sliced", key=key, n_projections=100)      -> sliced W_p
    wasserstein(..., method="1d")                                      -> W_p for (n, 1) clouds
    transport_plan(x, y, a=None, b=None, *, p=2, method="exact")       -> (n, m) plan
    barycentric_map(plan, y)                                           -> (n, d) Monge map estimate
    wasserstein_1d(u, v, u_weights=None, v_weights=None, p=1)          -> W_p on the line
    sinkhorn_divergence(x, y, a=None, b=None, *, epsilon)              -> (divergence, converged)
    gaussian_w2(m1, S1, m2, S2)                                        -> Bures-Wasserstein W2
    unbalanced_sinkhorn(x, y, a=None, b=None, *, epsilon, reg_m)       -> (unbalanced OT cost, converged)
    transport_plan(..., method="unbalanced", epsilon=, reg_m=)         -> (plan, converged)
    barycenter(point_sets, weights=None, *, n_support, key)            -> (n_support, d) W2 barycenter

Point clouds are (n, d) and (m, d); weights (n,), (m,) are non-negative, with equal totals within
``MASS_TOLERANCE`` (relative; unbalanced transport drops this); ``None`` means uniform 1/n. Ground distance is
Euclidean; the cost is ||x_i - y_j||^p. Checks run on concrete inputs; under an outer ``jit`` they are skipped.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gendl_jax.transport import checks, costs, entropic, exact, sliced, unbalanced
from gendl_jax.transport.barycenter import barycenter
from gendl_jax.transport.checks import MASS_TOLERANCE
from gendl_jax.transport.gaussian import gaussian_w2
from gendl_jax.transport.one_d import wasserstein_1d
from gendl_jax.transport.unbalanced import unbalanced_sinkhorn

__all__ = [
    "MASS_TOLERANCE",
    "barycenter",
    "barycentric_map",
    "gaussian_w2",
    "sinkhorn_divergence",
    "transport_plan",
    "unbalanced_sinkhorn",
    "wasserstein",
    "wasserstein_1d",
]

METHODS = ("exact", "sinkhorn", "sliced", "1d")


def _prepare(x, y, a, b, p, normalize):
    p = checks.check_p(p)
    x = checks.check_points(x, "x")
    y = checks.check_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension d, got x {x.shape} and y {y.shape}")
    dtype = jnp.result_type(x, y)
    x, y = x.astype(dtype), y.astype(dtype)
    n, m = x.shape[0], y.shape[0]
    a = checks.check_weights(a, n, "a", normalize)
    b = checks.check_weights(b, m, "b", normalize)
    if not normalize:
        checks.check_same_mass(a, b, n, m)
    a = None if a is None else a.astype(dtype)
    b = None if b is None else b.astype(dtype)
    return x, y, a, b, p


def wasserstein(
    x,
    y,
    a=None,
    b=None,
    *,
    p: float = 2,
    method: str = "exact",
    epsilon: float | None = None,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    key=None,
    n_projections: int = 100,
    normalize: bool = False,
):
    """Wasserstein distance W_p = (min_pi sum_ij ||x_i - y_j||^p pi_ij)^(1/p) between weighted point clouds.

    Args:
      x: (n, d) points; y: (m, d) points.
      a: (n,) masses of x, b: (m,) masses of y; None means uniform 1/n (1/m). Totals must agree
        within ``MASS_TOLERANCE``; ``normalize=True`` divides each given vector by its total.
      p: order >= 1.
      method:
        "exact": the linear program, solved on the host by a network simplex (C extension, see
          ``gendl_jax.transport.exact`` and ``gendl_jax.transport.netsimplex``);
          ``jax.grad`` w.r.t. x, y (through the optimal plan) and a, b (through the centred dual
          potentials) works under ``jit``.
        "sinkhorn": ott-jax Sinkhorn with absolute regularisation ``epsilon`` (required), stopped at
          marginal error ``threshold`` (L1) or ``max_iterations``; returns ``(<P_eps, C>^(1/p), converged)``
          where P_eps is the entropic plan (the value POT's ``sinkhorn2`` returns, to the power 1/p).
        "sliced": mean of W_p^p over ``n_projections`` random directions drawn from ``key``
          (required), to the power 1/p.
        "1d": for d = 1, by sorting (``wasserstein_1d``).

    Returns:
      A scalar, or ``(scalar, converged)`` for ``method="sinkhorn"``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x, y, a, b, p = _prepare(x, y, a, b, p, normalize)
    if method == "exact":
        value, _ = exact.transport_cost(costs.cost_matrix(x, y, p), a, b, exact.projection_start(x, y))
        return value ** (1.0 / p)
    if method == "sinkhorn":
        epsilon = checks.check_epsilon(epsilon)
        out = entropic.solve_sinkhorn(
            x, y, a, b, p=p, epsilon=epsilon, threshold=threshold, max_iterations=max_iterations
        )
        return entropic.transport_cost(out) ** (1.0 / p), out.converged
    if method == "sliced":
        if key is None:
            raise ValueError("method='sliced' needs key= (a jax.random key for the projection directions)")
        n_projections = checks.check_positive_int(n_projections, "n_projections")
        return sliced.sliced_pth_power(x, y, a, b, p=p, key=key, n_projections=n_projections) ** (1.0 / p)
    if x.shape[1] != 1:
        raise ValueError(f"method='1d' needs points of dimension 1, shape (n, 1); got x {x.shape}")
    return wasserstein_1d(x[:, 0], y[:, 0], a, b, p=p)


def transport_plan(
    x,
    y,
    a=None,
    b=None,
    *,
    p: float = 2,
    method: str = "exact",
    epsilon: float | None = None,
    reg_m=None,
    reg_type: str = "kl",
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    normalize: bool = False,
):
    """Optimal coupling pi (n, m) of ``wasserstein(x, y, a, b, p=p)``; rows sum to a, columns to b.

    ``method="exact"`` returns the plan (a vertex of the LP; a scaled permutation for uniform
    weights on equal sizes). ``method="sinkhorn"`` returns ``(plan, converged)`` with ott-jax.
    ``method="unbalanced"`` returns ``(plan, converged)``, the plan of ``unbalanced_sinkhorn`` (``epsilon``
    and ``reg_m`` required, ``reg_type``); its marginals are penalised, not fixed, and a, b may differ in mass.
    """
    if method not in ("exact", "sinkhorn", "unbalanced"):
        raise ValueError(f"method must be 'exact', 'sinkhorn' or 'unbalanced', got {method!r}")
    if method == "unbalanced":
        if reg_m is None:
            raise ValueError("method='unbalanced' needs reg_m= (the KL penalty on the marginals, > 0, or a pair)")
        return unbalanced.unbalanced_plan(
            x,
            y,
            a,
            b,
            epsilon=epsilon,
            reg_m=reg_m,
            p=p,
            reg_type=reg_type,
            threshold=threshold,
            max_iterations=max_iterations,
            normalize=normalize,
        )
    x, y, a, b, p = _prepare(x, y, a, b, p, normalize)
    if method == "exact":
        _, plan = exact.transport_cost(costs.cost_matrix(x, y, p), a, b, exact.projection_start(x, y))
        return plan
    epsilon = checks.check_epsilon(epsilon)
    out = entropic.solve_sinkhorn(x, y, a, b, p=p, epsilon=epsilon, threshold=threshold, max_iterations=max_iterations)
    return out.matrix, out.converged


def barycentric_map(plan, y):
    """Monge map estimate T(x_i) = sum_j pi_ij y_j / a_i with a_i = sum_j pi_ij; plan (n, m), y (m, d) -> (n, d).

    Every row of the plan must carry mass (a_i > 0).
    """
    plan, y = jnp.asarray(plan), jnp.asarray(y)
    if plan.ndim != 2:
        raise ValueError(f"plan must have shape (n, m), got {plan.shape}")
    if y.ndim != 2 or y.shape[0] != plan.shape[1]:
        raise ValueError(f"y must have shape (m, d) with m = {plan.shape[1]} (plan columns), got {y.shape}")
    if checks.is_concrete(plan):
        pn = np.asarray(plan)
        if not np.all(np.isfinite(pn)) or np.any(pn < 0):
            raise ValueError("plan must be finite and non-negative")
        if np.any(pn.sum(1) <= 0):
            raise ValueError(f"every row of plan must carry mass; rows {np.flatnonzero(pn.sum(1) <= 0)[:10]} are empty")
    return (plan @ y) / plan.sum(1, keepdims=True)


def sinkhorn_divergence(
    x,
    y,
    a=None,
    b=None,
    *,
    epsilon: float,
    p: float = 2,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    normalize: bool = False,
):
    """Sinkhorn divergence (ott-jax) OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2 on ||x - y||^p.

    OT_eps = <P, C> + eps KL(P || a b^T) (ott's ``reg_ot_cost``). ``epsilon`` is absolute.
    Returns ``(divergence, converged)``; converged is True when all three Sinkhorn solves converged.
    """
    x, y, a, b, p = _prepare(x, y, a, b, p, normalize)
    epsilon = checks.check_epsilon(epsilon)
    return entropic.sinkhorn_divergence_points(
        x, y, a, b, p=p, epsilon=epsilon, threshold=threshold, max_iterations=max_iterations
    )
