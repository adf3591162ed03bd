"""Inception Score (Salimans et al. 2016) from class logits or probabilities.

``IS = exp(E_x KL(p(y|x) || p(y)))`` on each of ``n_splits`` contiguous splits of the samples, as in
openai/improved-gan (split i holds rows ``[i N // s, (i + 1) N // s)``; p(y) is the split's mean);
returns the mean and the standard deviation (ddof 0, like improved-gan and pytorch-gan-metrics;
torchmetrics' default uses ddof 1). With C classes IS lies in [1, C]. Float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from gendl_jax.metrics._common import positive_int, x64

_SUM_TOLERANCE = 1e-4


@functools.partial(jax.jit, static_argnames=("n_splits",))
def _split_scores(probs: jax.Array, n_splits: int) -> jax.Array:
    n = probs.shape[0]
    scores = []
    for i in range(n_splits):
        part = probs[i * n // n_splits : (i + 1) * n // n_splits]
        marginal = jnp.mean(part, axis=0, keepdims=True)
        kl = jnp.sum(xlogy(part, part) - xlogy(part, marginal), axis=1)
        scores.append(jnp.exp(jnp.mean(kl)))
    return jnp.stack(scores)


def _probabilities(x: np.ndarray, from_logits: bool | None) -> np.ndarray:
    row_sums = x.sum(axis=1)
    looks_like_probs = bool(np.all(x >= 0) and np.all(x <= 1))
    if from_logits is None:
        if looks_like_probs and np.allclose(row_sums, 1.0, rtol=0, atol=_SUM_TOLERANCE):
            from_logits = False
        elif looks_like_probs:
            worst = float(np.abs(row_sums - 1).max())
            raise ValueError(
                f"logits_or_probs has entries in [0, 1] but rows that do not sum to 1 (max |sum - 1| = {worst:.3g}); "
                "pass from_logits=True if these are logits"
            )
        else:
            from_logits = True
    if from_logits:
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if not looks_like_probs or not np.allclose(row_sums, 1.0, rtol=0, atol=_SUM_TOLERANCE):
        raise ValueError(
            f"probabilities must lie in [0, 1] with rows summing to 1 (within {_SUM_TOLERANCE}); got entries in "
            f"[{x.min():.3g}, {x.max():.3g}], row sums in [{row_sums.min():.6g}, {row_sums.max():.6g}]"
        )
    return x


@x64
def inception_score(logits_or_probs, n_splits: int = 10, *, from_logits: bool | None = None) -> tuple[float, float]:
    """Inception Score of (N, C) class logits or probabilities; returns ``(mean, std)`` over splits.

    Args:
      logits_or_probs: (N, C). Rows in [0, 1] that sum to 1 (within 1e-4) are read as
        probabilities, anything else with negative or > 1 entries as logits, unless
        ``from_logits`` says which.
      n_splits: contiguous splits (10 as in improved-gan); N must be >= n_splits.
    """
    x = np.asarray(logits_or_probs, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"logits_or_probs must have shape (N, C) with C >= 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits_or_probs contains NaN or inf")
    n_splits = positive_int(n_splits, "n_splits")
    if x.shape[0] < n_splits:
        raise ValueError(f"need at least n_splits={n_splits} samples, got N={x.shape[0]}")
    probs = _probabilities(x, from_logits)
    scores = np.asarray(_split_scores(jnp.asarray(probs), n_splits))
    return float(scores.mean()), float(scores.std())
