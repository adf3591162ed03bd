"""Ground costs ||x_i - y_j||_2^p with gradients that stay finite where x_i = y_j."""

from __future__ import annotations

import jax.numpy as jnp

_DIRECT_MAX_DIM = 8  # below this, differences are formed explicitly (exact); above, by the matmul identity


def squared_distances(x, y):
    """(n, d), (m, d) -> (n, m) squared Euclidean distances."""
    if x.shape[1] <= _DIRECT_MAX_DIM:
        return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    sq = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
    # The identity can round to -1e-7 for coincident points; a squared distance is >= 0.
    return jnp.maximum(sq, 0.0)


def cost_matrix(x, y, p: float):
    """(n, d), (m, d) -> (n, m) matrix of ||x_i - y_j||^p."""
    sq = squared_distances(x, y)
    if p == 2:
        return sq
    positive = sq > 0
    return jnp.where(positive, jnp.where(positive, sq, 1.0) ** (p / 2), 0.0)
