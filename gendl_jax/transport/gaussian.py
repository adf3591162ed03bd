"""W2 between Gaussians in closed form (Bures-Wasserstein)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gendl_jax.transport import checks

__all__ = ["gaussian_w2"]


def check_gaussian(m, S, name_m: str, name_S: str, *, positive_definite: bool = False):
    """(m, S) as arrays of one floating dtype after checking shapes (d,), (d, d) and, on concrete
    inputs, finiteness, symmetry and positive semi-definiteness (definiteness if asked)."""
    m, S = jnp.asarray(m), jnp.asarray(S)
    if m.ndim != 1 or m.shape[0] == 0:
        raise ValueError(f"{name_m} must be a mean vector of shape (d,) with d >= 1, got {m.shape}")
    d = m.shape[0]
    if S.shape != (d, d):
        raise ValueError(f"{name_S} must be a covariance of shape (d, d) = ({d}, {d}), got {S.shape}")
    if checks.is_concrete(m, S):
        Sn = np.asarray(S, np.float64)
        if not (np.all(np.isfinite(np.asarray(m))) and np.all(np.isfinite(Sn))):
            raise ValueError(f"{name_m} and {name_S} must be finite")
        scale = max(1.0, float(np.abs(Sn).max()))
        if not np.allclose(Sn, Sn.T, atol=1e-6 * scale):
            raise ValueError(f"{name_S} must be symmetric")
        smallest = float(np.linalg.eigvalsh(Sn)[0])
        if positive_definite and smallest <= 0:
            raise ValueError(
                f"{name_S} must be positive definite (a Gaussian density); its smallest eigenvalue is {smallest:.3g}"
            )
        if smallest < -1e-6 * scale:
            raise ValueError(f"{name_S} must be positive semi-definite; its smallest eigenvalue is {smallest:.3g}")
    if not jnp.issubdtype(m.dtype, jnp.inexact):
        m = m.astype(jnp.result_type(float))
    return m, S.astype(m.dtype)


def _psd_sqrt(S):
    w, V = jnp.linalg.eigh(S)
    # eigh of a PSD matrix can return -1e-8 by round-off; the square root of such a direction is 0.
    return (V * jnp.sqrt(jnp.maximum(w, 0.0))) @ V.T


def gaussian_w2(m1, S1, m2, S2):
    """W2(N(m1, S1), N(m2, S2)) = sqrt(||m1 - m2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)).

    Means (d,), symmetric PSD covariances (d, d). Returns W2 (not squared).
    """
    m1, S1 = check_gaussian(m1, S1, "m1", "S1")
    m2, S2 = check_gaussian(m2, S2, "m2", "S2")
    if m1.shape != m2.shape:
        raise ValueError(f"m1 and m2 must have the same dimension, got {m1.shape} and {m2.shape}")
    root1 = _psd_sqrt(S1)
    cross = jnp.linalg.eigvalsh(root1 @ S2 @ root1)
    bures = jnp.trace(S1) + jnp.trace(S2) - 2.0 * jnp.sum(jnp.sqrt(jnp.maximum(cross, 0.0)))
    # Equal Gaussians give bures = -1e-7 by round-off rather than 0.
    return jnp.sqrt(jnp.maximum(jnp.sum((m1 - m2) ** 2) + bures, 0.0))
