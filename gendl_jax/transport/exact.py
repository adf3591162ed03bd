"""Exact (unregularised) optimal transport: the LP solved on the host, differentiable under ``jit``.

The solve runs in a ``jax.pure_callback`` on stop-gradient inputs; the value is then rebuilt in JAX
so that its derivatives are those of the envelope theorem:

  d/dx   sum_ij pi*_ij C_ij(x, y) = sum_ij pi*_ij dC_ij/dx          (the plan is held fixed)
  d/da_i OT(a, b) = f_i,  d/db_j OT(a, b) = g_j                      (the dual potentials, centred)

Host solvers (chosen by measurement, see ``benchmarks/transport.py``):
  * uniform weights on equal sizes: ``scipy.optimize.linear_sum_assignment`` (an optimal plan of
    the assignment LP is a permutation); the duals, needed only when weights are passed, come
    from shortest paths on the reduced costs of that permutation;
  * any other weights: ``scipy.optimize.linprog(method="highs-ipm")`` (interior point + crossover),
    whose equality-constraint marginals are the dual potentials. This LP has n*m variables and is
    far slower than a network simplex (see ``benchmarks/transport.py``).

The totals of a and b are checked (before tracing) to agree within ``MASS_TOLERANCE``; on the host,
b is then scaled by sum(a) / sum(b) so that float32 round-off cannot make the LP infeasible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse

__all__ = ["assignment", "solve_lp", "transport_cost"]

_UNIFORM_RTOL = 1e-6


def _assignment_host(cost):
    cost = np.asarray(cost, np.float64)
    _, cols = scipy.optimize.linear_sum_assignment(cost)
    return cols.astype(np.int32)


def assignment(cost):
    """Optimal permutation for an (n, n) cost: ``cols[i]`` is the column matched to row ``i``."""
    n = cost.shape[0]
    return jax.pure_callback(
        _assignment_host,
        jax.ShapeDtypeStruct((n,), jnp.int32),
        jax.lax.stop_gradient(cost),
        vmap_method="sequential",
    )


def _assignment_duals(cost, cols):
    """Dual potentials (f, g) with f_i + g_j <= C_ij and equality on the permutation ``cols``.

    g is the shortest-path distance (from a virtual source at 0) on the graph with an edge
    cols[i] -> j of weight C_ij - C_i,cols[i] >= reduced cost; optimality of ``cols`` rules out
    negative cycles. Vectorised Bellman-Ford: at most n sweeps of O(n^2).
    """
    n = cost.shape[0]
    matched = cost[np.arange(n), cols]
    reduced = cost - matched[:, None]
    g = np.zeros(n)
    for _ in range(n):
        relaxed = np.minimum(g, (g[cols][:, None] + reduced).min(0))
        if np.array_equal(relaxed, g):
            break
        g = relaxed
    return matched - g[cols], g


def _transport_lp(cost, a, b):
    n, m = cost.shape
    rows = scipy.sparse.kron(scipy.sparse.eye(n), np.ones((1, m)))
    columns = scipy.sparse.kron(np.ones((1, n)), scipy.sparse.eye(m))
    constraints = scipy.sparse.vstack([rows, columns]).tocsr()
    res = scipy.optimize.linprog(
        cost.ravel(), A_eq=constraints, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs-ipm"
    )
    if res.status != 0:
        raise RuntimeError(f"exact optimal transport: the LP solver failed ({res.message})")
    duals = res.eqlin.marginals
    return res.x.reshape(n, m), duals[:n], duals[n:]


def _solve_lp_host(cost, a, b):
    cost = np.asarray(cost, np.float64)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # The totals were checked to agree within MASS_TOLERANCE; remove the round-off so the LP is feasible.
    b = b * (a.sum() / b.sum())
    n, m = cost.shape
    if n == m and np.allclose(a, 1.0 / n, rtol=_UNIFORM_RTOL, atol=0) and np.allclose(b, a, rtol=_UNIFORM_RTOL, atol=0):
        cols = _assignment_host(cost)
        f, g = _assignment_duals(cost, cols)
        plan = np.zeros((n, n))
        plan[np.arange(n), cols] = a
    else:
        plan, f, g = _transport_lp(cost, a, b)
    dtype = np.result_type(cost.dtype, np.float32)
    return plan.astype(dtype), (f - f.mean()).astype(dtype), (g - g.mean()).astype(dtype)


def solve_lp(cost, a, b):
    """Optimal plan (n, m) and centred dual potentials f (n,), g (m,) of min <P, C> s.t. P1 = a, P^T 1 = b.

    All outputs are constants for autodiff; see ``transport_cost`` for the differentiable value.
    """
    n, m = cost.shape
    out = (
        jax.ShapeDtypeStruct((n, m), cost.dtype),
        jax.ShapeDtypeStruct((n,), cost.dtype),
        jax.ShapeDtypeStruct((m,), cost.dtype),
    )
    cost, a, b = (jax.lax.stop_gradient(t) for t in (cost, a, b))
    return jax.pure_callback(_solve_lp_host, out, cost, a, b, vmap_method="sequential")


def transport_cost(cost, a=None, b=None):
    """Exact OT cost min_P <P, C> with envelope-theorem gradients w.r.t. ``cost``, ``a`` and ``b``.

    Args:
      cost: (n, m) ground cost (differentiable function of the points).
      a: (n,) and b: (m,) masses with equal totals, or both None for uniform 1/n on n = m.

    Returns:
      (value, plan): the scalar cost and the (n, m) optimal plan (a constant).
    """
    n, m = cost.shape
    if a is None and b is None and n == m:
        cols = assignment(cost)
        value = jnp.mean(cost[jnp.arange(n), cols])
        plan = jax.nn.one_hot(cols, n, dtype=cost.dtype) / n
        return value, plan
    a = jnp.full((n,), 1.0 / n, cost.dtype) if a is None else a.astype(cost.dtype)
    b = jnp.full((m,), 1.0 / m, cost.dtype) if b is None else b.astype(cost.dtype)
    plan, f, g = solve_lp(cost, a, b)
    # Envelope theorem: the value is <plan, cost>; the two dot products are 0 but carry d/da = f, d/db = g.
    value = jnp.sum(plan * cost) + jnp.dot(f, a - jax.lax.stop_gradient(a)) + jnp.dot(g, b - jax.lax.stop_gradient(b))
    return value, plan
