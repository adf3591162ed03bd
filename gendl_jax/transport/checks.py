"""Checks of point clouds, weights and parameters, run on concrete inputs before tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MASS_TOLERANCE = 1e-4
"""Relative tolerance on |sum(a) - sum(b)| / max(sum(a), sum(b)) for balanced transport."""


def is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs if x is not None)


def _float(x):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.result_type(float))
    return x


def check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"p must be a number >= 1, got {p!r}")
    if not (p >= 1 and np.isfinite(p)):
        raise ValueError(f"p must be a finite number >= 1 (W_p is not a distance for p < 1), got {p}")
    return float(p)


def check_epsilon(epsilon) -> float:
    if epsilon is None:
        raise ValueError(
            "epsilon must be given (> 0): it is an absolute entropic regularisation in cost units; "
            "ott-jax's default (0.05 x std(cost)) changes from one minibatch to the next"
        )
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.integer, np.floating)):
        raise TypeError(f"epsilon must be a number > 0, got {epsilon!r}")
    if not (epsilon > 0 and np.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    return float(epsilon)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_points(x, name: str):
    """``x`` as a float array of shape (n, d), n >= 1; finite when concrete."""
    x = _float(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a point cloud of shape (n, d) with n >= 1 and d >= 1, got shape {x.shape}")
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return x


def check_samples_1d(u, name: str):
    u = _float(u)
    if u.ndim != 1 or u.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of samples, got shape {u.shape}")
    if is_concrete(u) and not np.all(np.isfinite(np.asarray(u))):
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return u


def check_weights(a, n: int, name: str, normalize: bool):
    """Weights of shape (n,), non-negative, finite, positive total; ``None`` stays ``None`` (uniform 1/n)."""
    if a is None:
        return None
    a = _float(a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match its points, got {a.shape}")
    if is_concrete(a):
        an = np.asarray(a, np.float64)
        if not np.all(np.isfinite(an)):
            raise ValueError(f"{name} must be finite; it holds NaN or inf")
        if np.any(an < 0):
            raise ValueError(f"{name} must be non-negative; its smallest mass is {an.min()}")
        if an.sum() <= 0:
            raise ValueError(f"{name} must have a positive total mass")
    if normalize:
        a = a / a.sum()
    return a


def check_same_mass(a, b, n: int, m: int, names=("a", "b")) -> None:
    """Balanced transport: the totals of ``a`` and ``b`` (``None`` is uniform with total 1) must agree."""
    if not is_concrete(a, b):
        return
    total_a = 1.0 if a is None else float(np.asarray(a, np.float64).sum())
    total_b = 1.0 if b is None else float(np.asarray(b, np.float64).sum())
    if abs(total_a - total_b) > MASS_TOLERANCE * max(total_a, total_b):
        which = f"{names[0]} sums to {total_a:.8g} and {names[1]} to {total_b:.8g}"
        hint = " (a missing weight vector means uniform weights summing to 1)" if a is None or b is None else ""
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same total mass within relative tolerance {MASS_TOLERANCE}: "
            f"{which}{hint}. Pass normalize=True to divide each by its total."
        )


def uniform(n: int, dtype):
    return jnp.full((n,), 1.0 / n, dtype)
