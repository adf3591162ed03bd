"""Divergences and distances between histograms, and the KL divergence between Gaussians.

Every histogram function takes ``p`` and ``q`` of shape ``(..., n)``: the bins lie on the last axis
and leading axes broadcast, so ``kl(p[None], q[:, None])`` gives all pairs. Logarithms are natural.
Results have the broadcast leading shape ``(...)``.

Inputs are checked on concrete values (not under tracing): masses must be finite and
non-negative, the bin axes must match, and the functions defined for probability distributions
(``kl``, ``jsd``, ``hellinger``, ``bhattacharyya``, ``total_variation``, ``kolmogorov_smirnov``,
``match_distance``) require each histogram to sum to 1 within ``SUM_TOLERANCE``, unless called
with ``normalize=True``, which divides each histogram by its total. Nothing is clipped.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gendl_jax.transport.gaussian import check_gaussian

__all__ = [
    "SUM_TOLERANCE",
    "bhattacharyya",
    "chi2",
    "hellinger",
    "histogram_intersection",
    "jsd",
    "kl",
    "kl_gaussians",
    "kolmogorov_smirnov",
    "match_distance",
    "minkowski",
    "quadratic_form",
    "total_variation",
]

SUM_TOLERANCE = 1e-4
"""Absolute tolerance on ``|sum(p) - 1|`` for the functions that take probability vectors."""


def _is_concrete(*xs) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_histograms(p, q, *, probability: bool, normalize: bool):
    """Checks ``p`` and ``q`` (concrete values only) and returns them as float arrays."""
    p, q = jnp.asarray(p), jnp.asarray(q)
    for name, h in (("p", p), ("q", q)):
        if h.ndim == 0:
            raise ValueError(f"{name} must have the bins on its last axis, shape (..., n); got a scalar")
        if h.shape[-1] == 0:
            raise ValueError(f"{name} must have at least one bin, got shape {h.shape}")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"p and q must have the same number of bins on the last axis, got {p.shape} and {q.shape}")
    try:
        np.broadcast_shapes(p.shape[:-1], q.shape[:-1])
    except ValueError:
        raise ValueError(f"the leading axes of p {p.shape} and q {q.shape} do not broadcast") from None
    if not jnp.issubdtype(p.dtype, jnp.inexact):
        p = p.astype(jnp.result_type(float))
    if not jnp.issubdtype(q.dtype, jnp.inexact):
        q = q.astype(jnp.result_type(float))
    if _is_concrete(p, q):
        for name, h in (("p", p), ("q", q)):
            hn = np.asarray(h)
            if not np.all(np.isfinite(hn)):
                raise ValueError(f"{name} must be finite; it holds NaN or inf")
            if np.any(hn < 0):
                raise ValueError(f"{name} must be non-negative; its smallest mass is {hn.min()}")
            totals = hn.sum(-1)
            if normalize and np.any(totals <= 0):
                raise ValueError(f"normalize=True needs every histogram in {name} to have a positive total")
            if probability and not normalize and np.any(np.abs(totals - 1.0) > SUM_TOLERANCE):
                worst = totals.ravel()[np.argmax(np.abs(totals - 1.0).ravel())]
                raise ValueError(
                    f"{name} must sum to 1 on its last axis (tolerance {SUM_TOLERANCE}); a histogram sums to "
                    f"{worst}. Pass normalize=True to divide by the totals."
                )
    if normalize:
        p = p / p.sum(-1, keepdims=True)
        q = q / q.sum(-1, keepdims=True)
    return p, q


def _xlogy_ratio(p, q):
    """Elementwise p * log(p / q): 0 where p = 0, +inf where p > 0 and q = 0; gradients stay finite at p = 0."""
    positive = p > 0
    safe_p = jnp.where(positive, p, 1.0)
    safe_q = jnp.where(q > 0, q, 1.0)
    term = jnp.where(q > 0, safe_p * (jnp.log(safe_p) - jnp.log(safe_q)), jnp.inf)
    return jnp.where(positive, term, 0.0)


def kl(p, q, *, normalize: bool = False):
    """Kullback-Leibler divergence KL(p || q) = sum_i p_i log(p_i / q_i), shape ``(...)``.

    0 log 0 = 0; +inf where some p_i > 0 has q_i = 0.
    """
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return _xlogy_ratio(p, q).sum(-1)


def jsd(p, q, *, normalize: bool = False):
    """Jensen-Shannon divergence 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2; in [0, log 2].

    This is the square of ``scipy.spatial.distance.jensenshannon`` (which returns the distance).
    """
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    m = 0.5 * (p + q)
    return 0.5 * _xlogy_ratio(p, m).sum(-1) + 0.5 * _xlogy_ratio(q, m).sum(-1)


def minkowski(p, q, r: float = 2):
    """Minkowski (l_r) distance (sum_i |p_i - q_i|^r)^(1/r) for r >= 1; ``r=math.inf`` gives max |p_i - q_i|."""
    if not isinstance(r, (int, float)) or isinstance(r, bool):
        raise TypeError(f"r must be a number >= 1, got {r!r}")
    if not r >= 1:
        raise ValueError(f"r must be >= 1 (for r < 1 this is not a distance), got {r}")
    p, q = _check_histograms(p, q, probability=False, normalize=False)
    diff = jnp.abs(p - q)
    if math.isinf(r):
        return diff.max(-1)
    return (diff**r).sum(-1) ** (1.0 / r)


def histogram_intersection(p, q):
    """Histogram intersection distance 1 - sum_i min(p_i, q_i) / sum_i q_i (Swain & Ballard); needs sum q > 0."""
    p, q = _check_histograms(p, q, probability=False, normalize=False)
    if _is_concrete(q) and np.any(np.asarray(q).sum(-1) <= 0):
        raise ValueError("q must have a positive total: histogram_intersection divides by sum(q)")
    return 1.0 - jnp.minimum(p, q).sum(-1) / q.sum(-1)


def chi2(p, q):
    """Chi-squared statistic of Rubner et al. (2000): sum_i (p_i - m_i)^2 / m_i with m = (p + q) / 2.

    Bins where p_i = q_i = 0 contribute 0.
    """
    p, q = _check_histograms(p, q, probability=False, normalize=False)
    m = 0.5 * (p + q)
    filled = m > 0
    return jnp.where(filled, (p - m) ** 2 / jnp.where(filled, m, 1.0), 0.0).sum(-1)


def quadratic_form(p, q, A):
    """Quadratic-form distance sqrt((p - q)^T A (p - q)); ``A`` is a symmetric PSD (n, n) bin-similarity matrix."""
    p, q = _check_histograms(p, q, probability=False, normalize=False)
    A = jnp.asarray(A)
    n = p.shape[-1]
    if A.shape != (n, n):
        raise ValueError(f"A must have shape (n, n) = ({n}, {n}) to match the bins, got {A.shape}")
    if _is_concrete(A):
        An = np.asarray(A, np.float64)
        if not np.all(np.isfinite(An)):
            raise ValueError("A must be finite")
        scale = max(1.0, float(np.abs(An).max()))
        if not np.allclose(An, An.T, atol=1e-6 * scale):
            raise ValueError("A must be symmetric")
        smallest = float(np.linalg.eigvalsh(An)[0])
        if smallest < -1e-6 * scale:
            raise ValueError(f"A must be positive semi-definite; its smallest eigenvalue is {smallest:.3g}")
    d = p - q
    form = jnp.einsum("...i,ij,...j->...", d, A.astype(d.dtype), d)
    # A PSD form can come out as -1e-8 by round-off; a zero form has a zero distance.
    return jnp.sqrt(jnp.maximum(form, 0.0))


def kolmogorov_smirnov(p, q, *, normalize: bool = False):
    """Kolmogorov-Smirnov distance max_i |CDF_p(i) - CDF_q(i)| between histograms on ordered bins."""
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return jnp.abs(jnp.cumsum(p, -1) - jnp.cumsum(q, -1)).max(-1)


def match_distance(p, q, *, normalize: bool = False):
    """Match distance sum_i |CDF_p(i) - CDF_q(i)|: the 1-D earth mover's distance for unit-spaced bins."""
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return jnp.abs(jnp.cumsum(p, -1) - jnp.cumsum(q, -1)).sum(-1)


def hellinger(p, q, *, normalize: bool = False):
    """Hellinger distance sqrt(sum_i (sqrt(p_i) - sqrt(q_i))^2 / 2), in [0, 1]."""
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return jnp.sqrt(0.5 * ((jnp.sqrt(p) - jnp.sqrt(q)) ** 2).sum(-1))


def bhattacharyya(p, q, *, normalize: bool = False):
    """Bhattacharyya distance -log(sum_i sqrt(p_i q_i)); +inf for disjoint supports."""
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return -jnp.log(jnp.sqrt(p * q).sum(-1))


def total_variation(p, q, *, normalize: bool = False):
    """Total variation distance sum_i |p_i - q_i| / 2 = max over events |P(A) - Q(A)|, in [0, 1]."""
    p, q = _check_histograms(p, q, probability=True, normalize=normalize)
    return 0.5 * jnp.abs(p - q).sum(-1)


def kl_gaussians(m1, S1, m2, S2):
    """KL(N(m1, S1) || N(m2, S2)) in closed form; means (d,), positive-definite covariances (d, d).

    0.5 * (tr(S2^-1 S1) + (m2 - m1)^T S2^-1 (m2 - m1) - d + log det S2 - log det S1), by Cholesky factors.
    """
    m1, S1 = check_gaussian(m1, S1, "m1", "S1", positive_definite=True)
    m2, S2 = check_gaussian(m2, S2, "m2", "S2", positive_definite=True)
    if m1.shape != m2.shape:
        raise ValueError(f"m1 and m2 must have the same dimension, got {m1.shape} and {m2.shape}")
    d = m1.shape[0]
    L1 = jnp.linalg.cholesky(S1)
    L2 = jnp.linalg.cholesky(S2)
    solve = jax.scipy.linalg.solve_triangular
    trace = jnp.sum(solve(L2, L1, lower=True) ** 2)  # tr(S2^-1 S1) = ||L2^-1 L1||_F^2
    mahalanobis = jnp.sum(solve(L2, m2 - m1, lower=True) ** 2)
    logdet = 2.0 * (jnp.sum(jnp.log(jnp.diag(L2))) - jnp.sum(jnp.log(jnp.diag(L1))))
    return 0.5 * (trace + mahalanobis - d + logdet)
