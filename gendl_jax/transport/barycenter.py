"""Free-support Wasserstein-2 barycenter of point clouds (Cuturi & Doucet 2014, Algorithm 2).

    min_X  sum_k w_k W_2^2(mu_X, mu_k),   mu_X = (1 / n_support) sum_i delta_{x_i},  mu_k = sum_j b_kj delta_{y_kj}

Fixed-point iteration on the support X (n_support, d): transport plans P_k from mu_X to each mu_k (exact or
Sinkhorn), then every point moves to the weighted average of its barycentric images,

    x_i <- sum_k w_k (sum_j P_k,ij y_kj) / (sum_j P_k,ij),

until sum_i ||x_i^new - x_i||^2 <= ``tolerance`` or ``n_iterations`` updates (POT's ``stopThr`` criterion). The
loop is a ``lax.while_loop`` (jit-able; the exact plans come from the network simplex in a ``pure_callback``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax.transport import checks, costs, entropic, exact
from gendl_jax.transport.checks import MASS_TOLERANCE

__all__ = ["METHODS", "barycenter"]

METHODS = ("exact", "sinkhorn")


def _check_point_sets(point_sets):
    if isinstance(point_sets, (jnp.ndarray, np.ndarray)) or not isinstance(point_sets, (list, tuple)):
        raise TypeError(
            f"point_sets must be a list of (n_k, d) arrays (one per measure), got {type(point_sets).__name__}"
        )
    if len(point_sets) == 0:
        raise ValueError("point_sets must hold at least one point cloud, got an empty list")
    sets = [checks.check_points(y, f"point_sets[{k}]") for k, y in enumerate(point_sets)]
    d = sets[0].shape[1]
    for k, y in enumerate(sets):
        if y.shape[1] != d:
            raise ValueError(
                f"every point set must have the same dimension d: point_sets[0] has d = {d}, "
                f"point_sets[{k}] has shape {y.shape}"
            )
    dtype = jnp.result_type(*sets)
    return [y.astype(dtype) for y in sets], dtype


def _check_masses(masses, sets, normalize):
    if masses is None:
        return [None] * len(sets)
    if not isinstance(masses, (list, tuple)) or len(masses) != len(sets):
        raise ValueError(
            f"masses must be None or a list of {len(sets)} entries (one (n_k,) array or None per "
            f"point set), got {masses!r:.80}"
        )
    out = []
    for k, (mass, y) in enumerate(zip(masses, sets)):
        name = f"masses[{k}]"
        mass = checks.check_weights(mass, y.shape[0], name, normalize)
        if mass is not None and checks.is_concrete(mass) and not normalize:
            total = float(np.asarray(mass, np.float64).sum())
            if abs(total - 1.0) > MASS_TOLERANCE:
                raise ValueError(
                    f"{name} must sum to 1 (the barycenter's mass) within {MASS_TOLERANCE}, "
                    f"got {total:.8g}. Pass normalize=True to divide each by its total."
                )
        out.append(None if mass is None else mass.astype(sets[0].dtype))
    return out


def _check_measure_weights(weights, k, dtype):
    if weights is None:
        return jnp.full((k,), 1.0 / k, dtype)
    weights = checks.check_weights(weights, k, "weights", normalize=False)
    if checks.is_concrete(weights):
        total = float(np.asarray(weights, np.float64).sum())
        if abs(total - 1.0) > MASS_TOLERANCE:
            raise ValueError(f"weights (one per point set) must sum to 1 within {MASS_TOLERANCE}, got {total:.8g}")
    return weights.astype(dtype)


def _initial_support(sets, n_support, key, init, d, dtype):
    if (key is None) == (init is None):
        raise ValueError(
            "pass exactly one of key (a jax.random key: the support starts at n_support points drawn "
            "from the union of the point sets) or init (an (n_support, d) starting support)"
        )
    if init is not None:
        init = checks.check_points(init, "init")
        if init.shape != (n_support, d):
            raise ValueError(f"init must have shape (n_support, d) = ({n_support}, {d}), got {init.shape}")
        return init.astype(dtype)
    union = jnp.concatenate(sets, axis=0)
    index = jax.random.choice(key, union.shape[0], (n_support,), replace=n_support > union.shape[0])
    return union[index]


def _plan(support, y, mass, method, epsilon, threshold, max_iterations):
    if method == "exact":
        cost = costs.cost_matrix(support, y, 2)
        a = None if mass is None else checks.uniform(support.shape[0], support.dtype)
        _, plan = exact.transport_cost(cost, a, mass, exact.projection_start(support, y))
        return plan
    out = entropic.solve_sinkhorn(
        support, y, None, mass, p=2, epsilon=epsilon, threshold=threshold, max_iterations=max_iterations
    )
    return out.matrix


def _update(plans, sets, weights):
    """sum_k w_k barycentric_map(P_k, Y_k): (n_support, d)."""
    return sum(w * (plan @ y) / plan.sum(1, keepdims=True) for w, plan, y in zip(weights, plans, sets))


def barycenter(
    point_sets,
    weights=None,
    *,
    n_support: int,
    key=None,
    init=None,
    masses=None,
    method: str = "exact",
    epsilon: float | None = None,
    n_iterations: int = 100,
    tolerance: float = 1e-7,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    normalize: bool = False,
):
    """Free-support W2 barycenter of K weighted point clouds: n_support equally weighted points.

    Args:
      point_sets: list of K point clouds (n_k, d); the n_k may differ, d may not.
      weights: (K,) barycentric weights w_k >= 0 summing to 1 (within ``MASS_TOLERANCE``); None: 1/K each.
        They are not renormalised.
      n_support: number of support points of the barycenter (a Python int, static under ``jit``).
      key: jax.random key: the support starts at n_support distinct points drawn from the union of the point
        sets (with replacement only if n_support exceeds their number). Exactly one of ``key`` and ``init``.
      init: (n_support, d) starting support, in place of ``key``.
      masses: None, or a list of K entries, each None (uniform 1/n_k) or (n_k,) non-negative masses summing to
        1 (the barycenter's mass); ``normalize=True`` divides each given vector by its total.
      method: "exact" (the LP, network simplex on the host) or "sinkhorn" (ott-jax, absolute ``epsilon``
        required, inner stop at marginal error ``threshold`` or ``max_iterations``).
      n_iterations: support updates at most; tolerance: stop once sum_i ||x_i^new - x_i||^2 <= tolerance.

    Returns:
      (n_support, d) support points, each of mass 1 / n_support, in the dtype of the point sets.

    Gradients: the output is rebuilt as sum_k w_k barycentric_map(P_k, Y_k) with the last plans P_k held
    constant, so ``jax.grad`` flows to ``point_sets`` and ``weights``. For "exact" this is the derivative of
    the fixed point itself wherever the optimal plans are unique (they are then locally constant in the
    points; true for generic inputs). For "sinkhorn" it omits the plans' dependence on the points (an
    approximation). ``masses``, ``key`` and ``init`` get no gradient.

    Agrees with POT's ``ot.lp.free_support_barycenter`` ("exact") and
    ``ot.bregman.free_support_sinkhorn_barycenter`` ("sinkhorn") from the same starting support (see
    tests/transport/test_barycenter.py for the measured agreement).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sets, dtype = _check_point_sets(point_sets)
    d = sets[0].shape[1]
    n_support = checks.check_positive_int(n_support, "n_support")
    n_iterations = checks.check_positive_int(n_iterations, "n_iterations")
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float, np.integer, np.floating))
        or not (tolerance >= 0)
    ):
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    if method == "sinkhorn":
        epsilon = checks.check_epsilon(epsilon)
    weights = _check_measure_weights(weights, len(sets), dtype)
    masses = _check_masses(masses, sets, normalize)
    support = _initial_support(sets, n_support, key, init, d, dtype)

    # The loop runs on constants; the output is rebuilt differentiably from the last plans below.
    fixed_sets = [jax.lax.stop_gradient(y) for y in sets]
    fixed_masses = [None if m is None else jax.lax.stop_gradient(m) for m in masses]
    fixed_weights = jax.lax.stop_gradient(weights)

    def plans_at(x):
        return [_plan(x, y, m, method, epsilon, threshold, max_iterations) for y, m in zip(fixed_sets, fixed_masses)]

    def keep_going(state):
        iteration, _, displacement, _ = state
        return (iteration < n_iterations) & (displacement > tolerance)

    def step(state):
        iteration, x, _, _ = state
        plans = plans_at(x)
        new = _update(plans, fixed_sets, fixed_weights)
        return iteration + 1, new, jnp.sum((new - x) ** 2), plans

    start = jax.lax.stop_gradient(support)
    empty = [jnp.zeros((n_support, y.shape[0]), dtype) for y in sets]
    state = (jnp.asarray(0), start, jnp.asarray(jnp.inf, dtype), empty)
    _, _, _, plans = jax.lax.while_loop(keep_going, step, state)
    return _update([jax.lax.stop_gradient(p) for p in plans], sets, weights)
