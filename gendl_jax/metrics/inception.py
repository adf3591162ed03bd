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


@jax.jit
def _entropies(probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    marginal = jnp.mean(probs, axis=0)
    return -jnp.sum(xlogy(marginal, marginal)), -jnp.mean(jnp.sum(xlogy(probs, probs), axis=1))


@x64
def inception_score_breakdown(logits_or_probs, *, threshold: float = 0.9,
                              quantiles=(0.01, 0.05, 0.1, 0.25, 0.5), n_splits: int = 10,
                              from_logits: bool | None = None) -> dict:
    """Splits an Inception Score into class balance and confidence, to tell which one holds it back.

    Over all N rows (one split), ``IS_1 = exp(H(p(y)) - E_x H(p(y|x))) = class_balance * confidence`` with
    ``class_balance = exp(H(p(y)))`` (at most C: the score if every prediction were certain) and
    ``confidence = exp(-E_x H(p(y|x)))`` (at most 1).

    Args:
      logits_or_probs: (N, C), read as in :func:`inception_score`.
      threshold: a row is "confident" when its top class probability is >= this, in (0, 1].
      quantiles: levels in [0, 1] of the top class probability to report.
      n_splits: splits of the Inception Score of the confident rows.
      from_logits: as in :func:`inception_score`.

    Returns a dict: ``inception_score_one_split``, ``class_balance``, ``confidence``,
    ``predicted_class_histogram`` (C ints, argmax counts), ``top_probability_quantiles`` ({level: value}),
    ``fraction_below_threshold``, ``threshold``, ``n_confident`` and ``inception_score_confident`` (mean
    and std over ``n_splits``; None when fewer than ``n_splits`` rows are confident).
    """
    x = np.asarray(logits_or_probs, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"logits_or_probs must have shape (N, C) with C >= 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits_or_probs contains NaN or inf")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
    levels = np.asarray(quantiles, np.float64)
    if levels.ndim != 1 or levels.size == 0 or np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"quantiles must be a non-empty sequence of levels in [0, 1], got {quantiles!r}")
    n_splits = positive_int(n_splits, "n_splits")
    probs = _probabilities(x, from_logits)
    marginal_entropy, conditional_entropy = (float(v) for v in _entropies(jnp.asarray(probs)))
    top = probs.max(axis=1)
    confident = probs[top >= threshold]
    return {
        "inception_score_one_split": float(np.exp(marginal_entropy - conditional_entropy)),
        "class_balance": float(np.exp(marginal_entropy)),
        "confidence": float(np.exp(-conditional_entropy)),
        "predicted_class_histogram": np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]).tolist(),
        "top_probability_quantiles": {float(q): float(v) for q, v in zip(levels, np.quantile(top, levels))},
        "fraction_below_threshold": float(np.mean(top < threshold)),
        "threshold": float(threshold),
        "n_confident": int(confident.shape[0]),
        "inception_score_confident": (inception_score(confident, n_splits, from_logits=False)
                                      if confident.shape[0] >= n_splits else None),
    }
