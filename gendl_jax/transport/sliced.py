"""Sliced Wasserstein distance: 1-D transport along random directions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gendl_jax.transport import one_d

__all__ = ["sliced_pth_power"]


def sliced_pth_power(x, y, a, b, *, p: float, key, n_projections: int):
    """Mean over ``n_projections`` uniform directions theta of W_p^p(<x, theta>, <y, theta>).

    x: (n, d), y: (m, d); a, b: weights or None. The sliced distance is this to the power 1/p
    (the convention of POT's ``sliced_wasserstein_distance``).
    """
    directions = jax.random.normal(key, (n_projections, x.shape[1]), x.dtype)
    directions = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
    # (k, n), (k, m): the projections on the leading axis. vmap over axis 1 of (n, k) instead broke
    # jax.grad(jax.jit(...)) through sort_values' custom JVP ("sub got incompatible shapes (k, n), (n, k)").
    px, py = directions @ x.T, directions @ y.T
    if a is None and b is None and x.shape[0] == y.shape[0]:
        per_direction = jax.vmap(one_d._pth_power_uniform, in_axes=(0, 0, None))(px, py, p)
    else:
        a = jnp.full((x.shape[0],), 1.0 / x.shape[0], x.dtype) if a is None else a
        b = jnp.full((y.shape[0],), 1.0 / y.shape[0], x.dtype) if b is None else b
        per_direction = jax.vmap(one_d._pth_power_weighted, in_axes=(0, 0, None, None, None))(px, py, a, b, p)
    return jnp.mean(per_direction)
