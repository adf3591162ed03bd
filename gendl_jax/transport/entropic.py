"""Entropic optimal transport through ott-jax: Sinkhorn and the Sinkhorn divergence.

Epsilon is always explicit and absolute (cost units): ott-jax's default, 0.05 x std(cost), moves
between minibatches. Sinkhorn does not raise when it stops before ``threshold``; every function
here returns ``converged`` next to its value.
"""

from __future__ import annotations

import jax.numpy as jnp
from ott.geometry import costs, geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn
from ott.tools import sinkhorn_divergence as ott_divergence

from gendl_jax.transport import costs as point_costs

__all__ = ["sinkhorn_divergence_points", "solve_sinkhorn", "transport_cost"]


def _geometry_kwargs(p: float):
    if p == 2:
        return {"cost_fn": costs.SqEuclidean()}
    if p == 1:
        return {"cost_fn": costs.Euclidean()}
    return None


def make_geometry(x, y, p: float, epsilon: float):
    """PointCloud for p = 1, 2 (the cost ||x - y||^p is one of ott's); else a dense cost-matrix geometry."""
    kwargs = _geometry_kwargs(p)
    if kwargs is not None:
        return pointcloud.PointCloud(x, y, epsilon=epsilon, **kwargs)
    return geometry.Geometry(cost_matrix=point_costs.cost_matrix(x, y, p), epsilon=epsilon)


def solve_sinkhorn(x, y, a, b, *, p: float, epsilon: float, threshold: float, max_iterations: int):
    """ott-jax Sinkhorn (log domain) on ||x_i - y_j||^p; returns ott's ``SinkhornOutput``.

    a, b: (n,), (m,) or None for uniform. ``out.matrix`` is the plan, ``transport_cost(out)`` its cost
    <P, C>, ``out.converged`` whether the marginal error went under ``threshold``.
    """
    geom = make_geometry(x, y, p, epsilon)
    solver = ott_sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
    return solver(linear_problem.LinearProblem(geom, a=a, b=b))


def transport_cost(out):
    """<P, C> at the Sinkhorn plan, from the dense plan and cost.

    ott's ``out.primal_cost`` goes through a low-rank factorisation of the squared-Euclidean cost and
    applies the plan to its d + 2 columns: measured 5x slower than the whole solve at n = 200, d = 64.
    """
    return jnp.sum(out.matrix * out.geom.cost_matrix)


def sinkhorn_divergence_points(x, y, a, b, *, p: float, epsilon: float, threshold: float, max_iterations: int):
    """ott-jax Sinkhorn divergence OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2; returns (value, converged).

    OT_eps is ott's ``reg_ot_cost``: <P, C> + eps KL(P || a b^T) at the Sinkhorn plan.
    """
    solve_kwargs = {"threshold": threshold, "max_iterations": max_iterations}
    kwargs = _geometry_kwargs(p)
    if kwargs is not None:
        value, out = ott_divergence.sinkhorn_divergence(
            pointcloud.PointCloud, x, y, a=a, b=b, epsilon=epsilon, solve_kwargs=solve_kwargs, **kwargs
        )
    else:
        value, out = ott_divergence.sinkhorn_divergence(
            geometry.Geometry,
            point_costs.cost_matrix(x, y, p),
            point_costs.cost_matrix(x, x, p),
            point_costs.cost_matrix(y, y, p),
            a=a,
            b=b,
            epsilon=epsilon,
            solve_kwargs=solve_kwargs,
        )
    converged = out.converged[0] & out.converged[1] & out.converged[2]
    return value, converged
