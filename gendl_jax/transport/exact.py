"""Exact (unregularised) optimal transport: the LP solved on the host, differentiable under ``jit``.

The solve runs in a ``jax.pure_callback`` on stop-gradient inputs; the value is then rebuilt in JAX
so that its derivatives are those of the envelope theorem:

  d/dx   sum_ij pi*_ij C_ij(x, y) = sum_ij pi*_ij dC_ij/dx          (the plan is held fixed)
  d/da_i OT(a, b) = f_i,  d/db_j OT(a, b) = g_j                      (the dual potentials, centred)

Host solver: our network simplex (``gendl_jax.transport.netsimplex``, a C extension), float64, which
returns an optimal vertex plan and the dual potentials together; the plan crosses back to JAX as
its n + m - 1 basic arcs (the dense (n, m) plan is built in JAX only where it is used). Uniform
weights on equal sizes without weight arguments need no duals: the optimal vertex is a
permutation and only its columns cross back; up to n = 100 ``scipy.optimize.linear_sum_assignment``
finds it faster (``_HUNGARIAN_MAX_N``). Chosen by measurement (``benchmarks/transport.py``): the
network simplex is 3x (n = 500) to 10x (n = 2,000) faster than ``linear_sum_assignment`` and about
two orders of magnitude faster than HiGHS ``linprog`` on general weights.

The start of the simplex is the north-west corner rule in the order of the points projected on
their principal axis (``projection_start``), which is the optimal plan in 1-D and a good start in
low dimension; any order gives the same optimum.

The totals of a and b are checked (before tracing) to agree within ``MASS_TOLERANCE``; on the host,
b is then scaled by sum(a) / sum(b) so that float32 round-off cannot make the LP infeasible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from gendl_jax.transport.netsimplex import network_simplex

__all__ = ["assignment", "projection_start", "solve_lp", "transport_cost"]


def projection_start(x, y, iterations: int = 8):
    """Coordinates of x (n, d) and y (m, d) on the pooled clouds' principal axis (power iteration),
    as stop-gradient (n,), (m,) arrays: the order used to start the simplex."""
    x, y = jax.lax.stop_gradient(x), jax.lax.stop_gradient(y)
    centre = (jnp.sum(x, 0) + jnp.sum(y, 0)) / (x.shape[0] + y.shape[0])
    xc, yc = x - centre, y - centre
    direction = jnp.ones((x.shape[1],), x.dtype) / np.sqrt(x.shape[1])
    for _ in range(iterations):
        w = xc.T @ (xc @ direction) + yc.T @ (yc @ direction)
        direction = w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(x.dtype).tiny)
    return xc @ direction, yc @ direction


def _order(start):
    if start is None:
        return None
    px, py = (np.asarray(t, np.float64) for t in start)
    return np.argsort(px, kind="stable"), np.argsort(py, kind="stable")


# Uniform weights, n = m <= this: scipy's Hungarian (linear_sum_assignment) is the faster host solver
# (jitted W2 at n = 10 / 50 / 100 / 200: 0.13 / 0.23 / 0.81 / 3.0 ms against 0.27 / 0.84 / 0.80 / 2.0 ms).
_HUNGARIAN_MAX_N = 100


def _assignment_host(cost, *start):
    cost = np.asarray(cost)  # float32 stays float32: the simplex reads it as exact doubles
    n = cost.shape[0]
    if n <= _HUNGARIAN_MAX_N:
        return scipy.optimize.linear_sum_assignment(cost)[1].astype(np.int32)
    uniform = np.full(n, 1.0 / n)
    res = network_simplex(cost, uniform, uniform, order=_order(start or None))
    # An optimal vertex of the assignment polytope is a permutation: its n arcs of flow exactly 1/n.
    full = res.flows > 0
    cols = np.full(n, -1)
    cols[res.rows[full]] = res.cols[full]
    if np.count_nonzero(full) != n or not np.array_equal(np.sort(cols), np.arange(n)):  # a safe answer if not
        cols = scipy.optimize.linear_sum_assignment(cost)[1]
    return cols.astype(np.int32)


def assignment(cost, start=None):
    """Optimal permutation for an (n, n) cost: ``cols[i]`` is the column matched to row ``i``.

    ``start``: optional (px (n,), py (n,)) coordinates ordering the simplex start (see ``projection_start``).
    """
    n = cost.shape[0]
    extra = () if start is None else tuple(jax.lax.stop_gradient(t) for t in start)
    return jax.pure_callback(
        _assignment_host,
        jax.ShapeDtypeStruct((n,), jnp.int32),
        jax.lax.stop_gradient(cost),
        *extra,
        vmap_method="sequential",
    )


def _solve_lp_host(cost, a, b, *start):
    cost = np.asarray(cost)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, m = cost.shape
    res = network_simplex(cost, a, b, order=_order(start or None))
    dtype = np.result_type(cost.dtype, np.float32)
    # Fixed size n + m - 1 for the callback: zero masses leave fewer basic arcs; pad with empty ones.
    k = n + m - 1
    rows, cols, flows = np.zeros(k, np.int32), np.zeros(k, np.int32), np.zeros(k, dtype)
    rows[: res.rows.size], cols[: res.cols.size], flows[: res.flows.size] = res.rows, res.cols, res.flows
    f, g = res.u, res.v
    return rows, cols, flows, (f - f.mean()).astype(dtype), (g - g.mean()).astype(dtype)


def solve_lp(cost, a, b, start=None):
    """Optimal plan and centred dual potentials of min <P, C> s.t. P1 = a, P^T 1 = b, C: (n, m).

    Returns ``(rows, cols, flows, f, g)``: the plan's n + m - 1 basic arcs (int32 rows and columns,
    masses; P[rows, cols] += flows builds it), f (n,) and g (m,). All are constants for autodiff;
    see ``transport_cost`` for the differentiable value. ``start``: optional (px (n,), py (m,))
    coordinates ordering the simplex start.
    """
    n, m = cost.shape
    k = n + m - 1
    out = (
        jax.ShapeDtypeStruct((k,), jnp.int32),
        jax.ShapeDtypeStruct((k,), jnp.int32),
        jax.ShapeDtypeStruct((k,), cost.dtype),
        jax.ShapeDtypeStruct((n,), cost.dtype),
        jax.ShapeDtypeStruct((m,), cost.dtype),
    )
    args = (cost, a, b) + (() if start is None else tuple(start))
    args = tuple(jax.lax.stop_gradient(t) for t in args)
    return jax.pure_callback(_solve_lp_host, out, *args, vmap_method="sequential")


def transport_cost(cost, a=None, b=None, start=None):
    """Exact OT cost min_P <P, C> with envelope-theorem gradients w.r.t. ``cost``, ``a`` and ``b``.

    Args:
      cost: (n, m) ground cost (differentiable function of the points).
      a: (n,) and b: (m,) masses with equal totals, or both None for uniform 1/n on n = m.
      start: optional (px (n,), py (m,)) coordinates ordering the simplex start (``projection_start``);
        it changes the speed, not the optimum.

    Returns:
      (value, plan): the scalar cost and the (n, m) optimal plan (a constant).
    """
    n, m = cost.shape
    if a is None and b is None and n == m:
        cols = assignment(cost, start)
        value = jnp.mean(cost[jnp.arange(n), cols])
        plan = jax.nn.one_hot(cols, n, dtype=cost.dtype) / n
        return value, plan
    a = jnp.full((n,), 1.0 / n, cost.dtype) if a is None else a.astype(cost.dtype)
    b = jnp.full((m,), 1.0 / m, cost.dtype) if b is None else b.astype(cost.dtype)
    rows, cols, flows, f, g = solve_lp(cost, a, b, start)
    # Envelope theorem: the value is <plan, cost>; the two dot products are 0 but carry d/da = f, d/db = g.
    value = jnp.dot(flows, cost[rows, cols])
    value = value + jnp.dot(f, a - jax.lax.stop_gradient(a)) + jnp.dot(g, b - jax.lax.stop_gradient(b))
    plan = jnp.zeros((n, m), cost.dtype).at[rows, cols].add(flows)
    return value, plan
