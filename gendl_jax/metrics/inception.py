"""Inception Score (Salimans et al. 2016) and its variants in Borji's table, from class logits or probabilities.

``IS = exp(E_x KL(p(y|x) || p(y)))`` on each of ``n_splits`` contiguous splits of the samples, as in
openai/improved-gan (split i holds rows ``[i N // s, (i + 1) N // s)``; p(y) is the split's mean);
returns the mean and the standard deviation (ddof 0, like improved-gan and pytorch-gan-metrics;
torchmetrics' default uses ddof 1). With C classes IS lies in [1, C].

The other rows of the lecture's table that read a classifier's p(y|x) (over all N samples, one split):

* :func:`modified_inception_score` (m-IS, Gurumurthy et al. 2017): ``exp(E_{x_i, x_j} KL(p(y|x_i) || p(y|x_j)))``
  over pairs of samples of the same class: diversity within a class.
* :func:`mode_score` (Che et al. 2017): the one-split IS times ``exp(-KL(p(y) || p*(y)))``, with p* the label
  distribution of the real data: IS penalised for a class balance unlike the data's.
* :func:`am_score` (Zhou et al. 2018): ``KL(p*(y) || p(y)) + E_x H(p(y|x))``, lower is better, 0 at best.

And from the classifier's hard labels, :func:`class_balance` (the mode-collapse test of Santurkar et al. 2018, the
"diversity ... using classification methods" row): the predicted-class histogram against a reference balance,
by KL, total variation and Pearson's chi-square test.

Float64 throughout.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy
from scipy.special import gammaincc

from gendl_jax.metrics.common import positive_int, x64

_SUM_TOLERANCE = 1e-4


@functools.partial(jax.jit, static_argnames=("n_splits",))
def _split_scores(probs: jax.Array, log_probs: jax.Array, n_splits: int) -> jax.Array:
    # In log space: log p(y) = logsumexp_i log p(y|x_i) - log n. Averaging the probabilities instead underflows
    # when logits span more than ~700 (the mean of subnormal probabilities flushes to 0 on XLA:CPU, and
    # p log(p / 0) is then inf).
    n = probs.shape[0]
    scores = []
    for i in range(n_splits):
        lo, hi = i * n // n_splits, (i + 1) * n // n_splits
        part, log_part = probs[lo:hi], log_probs[lo:hi]
        log_marginal = jax.scipy.special.logsumexp(log_part, axis=0, keepdims=True) - jnp.log(hi - lo)
        kl = jnp.sum(jnp.where(part > 0, part * (log_part - log_marginal), 0.0), axis=1)
        scores.append(jnp.exp(jnp.mean(kl)))
    return jnp.stack(scores)


def _reads_as_logits(x: np.ndarray, from_logits: bool | None) -> bool:
    """Whether checked (N, C) ``x`` holds logits: ``from_logits`` if given (probabilities are then
    validated), else rows in [0, 1] summing to 1 are probabilities and anything outside [0, 1] logits."""
    row_sums = x.sum(axis=1)
    looks_like_probs = bool(np.all(x >= 0) and np.all(x <= 1))
    if from_logits is None:
        if looks_like_probs and np.allclose(row_sums, 1.0, rtol=0, atol=_SUM_TOLERANCE):
            return False
        if looks_like_probs:
            worst = float(np.abs(row_sums - 1).max())
            raise ValueError(
                f"logits_or_probs has entries in [0, 1] but rows that do not sum to 1 (max |sum - 1| = {worst:.3g}); "
                "pass from_logits=True if these are logits"
            )
        return True
    if not from_logits and (not looks_like_probs or not np.allclose(row_sums, 1.0, rtol=0, atol=_SUM_TOLERANCE)):
        raise ValueError(
            f"probabilities must lie in [0, 1] with rows summing to 1 (within {_SUM_TOLERANCE}); got entries in "
            f"[{x.min():.3g}, {x.max():.3g}], row sums in [{row_sums.min():.6g}, {row_sums.max():.6g}]"
        )
    return bool(from_logits)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _probabilities(x: np.ndarray, from_logits: bool | None) -> np.ndarray:
    return np.exp(_log_softmax(x)) if _reads_as_logits(x, from_logits) else x


def _check_logits_or_probs(logits_or_probs) -> np.ndarray:
    x = np.asarray(logits_or_probs, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"logits_or_probs must have shape (N, C) with C >= 2, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("logits_or_probs contains NaN or inf")
    return x


@x64
def inception_score(
    logits_or_probs, n_splits: int = 10, *, from_logits: bool | None = None, shuffle_seed: int | None = None
) -> tuple[float, float]:
    """Inception Score of (N, C) class logits or probabilities; returns ``(mean, std)`` over splits.

    Args:
      logits_or_probs: (N, C). Rows in [0, 1] that sum to 1 (within 1e-4) are read as
        probabilities, anything else with negative or > 1 entries as logits, unless
        ``from_logits`` says which.
      n_splits: contiguous splits (10 as in improved-gan); N must be >= n_splits.
      shuffle_seed: None keeps the rows in order (improved-gan, pytorch-gan-metrics); an int first permutes them
        with ``numpy.random.RandomState(shuffle_seed).permutation(N)``, as torch-fidelity does (its default seed
        is 2020, and it scores the 1008 Inception logits without the fc bias, ``"logits_unbiased"``).
    """
    x = _check_logits_or_probs(logits_or_probs)
    n_splits = positive_int(n_splits, "n_splits")
    if x.shape[0] < n_splits:
        raise ValueError(f"need at least n_splits={n_splits} samples, got N={x.shape[0]}")
    if shuffle_seed is not None:
        if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, (int, np.integer)) or shuffle_seed < 0:
            raise ValueError(f"shuffle_seed must be None or a non-negative int, got {shuffle_seed!r}")
        x = x[np.random.RandomState(int(shuffle_seed)).permutation(x.shape[0])]
    probs, log_probs = _log_probabilities(x, from_logits)
    scores = np.asarray(_split_scores(jnp.asarray(probs), jnp.asarray(log_probs), n_splits))
    return float(scores.mean()), float(scores.std())


@jax.jit
def _entropies(probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    marginal = jnp.mean(probs, axis=0)
    return -jnp.sum(xlogy(marginal, marginal)), -jnp.mean(jnp.sum(xlogy(probs, probs), axis=1))


@x64
def inception_score_breakdown(
    logits_or_probs,
    *,
    threshold: float = 0.9,
    quantiles=(0.01, 0.05, 0.1, 0.25, 0.5),
    n_splits: int = 10,
    from_logits: bool | None = None,
) -> dict:
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
    x = _check_logits_or_probs(logits_or_probs)
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
        "inception_score_confident": (
            inception_score(confident, n_splits, from_logits=False) if confident.shape[0] >= n_splits else None
        ),
    }


def _log_probabilities(x: np.ndarray, from_logits: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, log-probabilities) of checked (N, C) ``x``; from logits the logs come from a
    log-softmax, so that a very unlikely class keeps a finite log-probability."""
    if _reads_as_logits(x, from_logits):
        log_probs = _log_softmax(x)
        return np.exp(log_probs), log_probs
    with np.errstate(divide="ignore"):
        return x, np.log(x)


@functools.partial(jax.jit, static_argnames=("n_groups",))
def _mean_pairwise_kl(probs: jax.Array, log_probs: jax.Array, groups: jax.Array, n_groups: int) -> jax.Array:
    """Mean of KL(p_i || p_j) over ordered pairs i != j of each group, in O(N C).

    ``sum_{i != j} KL(p_i || p_j) = (n - 1) sum_i p_i.log p_i - [(sum_i p_i).(sum_j log p_j) - sum_i p_i.log p_i]``
    with n the group's size; NaN for groups of fewer than two samples.
    """

    def segment(v):
        return jax.ops.segment_sum(v, groups, num_segments=n_groups)

    self_terms = jnp.sum(xlogy(probs, probs), axis=1)  # p_i . log p_i (0 log 0 = 0)
    sizes = segment(jnp.ones_like(self_terms))
    prob_sums, log_sums = segment(probs), segment(log_probs)  # log_sums may hold -inf (an exact zero)
    cross_all = jnp.sum(jnp.where(prob_sums > 0, prob_sums * log_sums, 0.0), axis=1)  # i = j included
    self_sums = segment(self_terms)
    total = (sizes - 1) * self_sums - (cross_all - self_sums)
    pairs = sizes * (sizes - 1)
    return jnp.where(pairs > 0, total / jnp.where(pairs > 0, pairs, 1.0), jnp.nan)


@x64
def modified_inception_score(logits_or_probs, labels=None, *, from_logits: bool | None = None) -> dict:
    """m-IS (Gurumurthy et al. 2017, DeLiGAN): diversity of the classifier's predictions within each class.

    For the samples of class k, ``m-IS_k = exp(mean_{i != j} KL(p(y|x_i) || p(y|x_j)))`` (ordered pairs of
    distinct samples). 1 when every sample of the class gets the same prediction; larger when they differ.
    It is not a quality score on its own: unconfident predictions raise it too.

    Args:
      logits_or_probs: (N, C), read as in :func:`inception_score`.
      labels: (N,) ints in [0, C) that group the samples (e.g. a conditional model's classes); default:
        the classifier's predicted class (argmax).
      from_logits: as in :func:`inception_score`.

    Returns a dict: ``score``, ``exp(sum_k w_k mean_{i != j in k} KL)`` with ``w_k`` the share of class k
    among the samples of the classes with at least two samples (x_i drawn from the samples, x_j from
    the others of its class); ``per_class`` (C values m-IS_k, None for a class with fewer than two
    samples) and ``class_counts`` (C ints). Weighting by class size keeps a handful of ambiguous samples
    in a rare predicted class (whose m-IS_k can exceed 10) from dominating the score, as an unweighted
    mean over classes would.
    """
    x = _check_logits_or_probs(logits_or_probs)
    n, c = x.shape
    if labels is None:
        groups = np.argmax(x, axis=1)
    else:
        groups = np.asarray(labels)
        if groups.shape != (n,):
            raise ValueError(f"labels must have shape (N,) = ({n},), got {groups.shape}")
        if not np.issubdtype(groups.dtype, np.integer) or groups.dtype == bool:
            raise TypeError(f"labels must be integers, got dtype {groups.dtype}")
        if groups.min() < 0 or groups.max() >= c:
            raise ValueError(f"labels must lie in [0, C) = [0, {c}), got values in [{groups.min()}, {groups.max()}]")
    counts = np.bincount(groups, minlength=c)
    if counts.max() < 2:
        raise ValueError(
            f"modified_inception_score needs a class with at least two samples, got counts {counts.tolist()}"
        )
    probs, log_probs = _log_probabilities(x, from_logits)
    mean_kl = np.asarray(_mean_pairwise_kl(jnp.asarray(probs), jnp.asarray(log_probs), jnp.asarray(groups), c))
    valid = counts >= 2
    weights = counts[valid] / counts[valid].sum()
    per_class = np.exp(mean_kl)
    return {
        "score": float(np.exp(np.sum(weights * mean_kl[valid]))),
        "per_class": [float(v) if ok else None for v, ok in zip(per_class, valid)],
        "class_counts": counts.tolist(),
    }


def mean_prediction(logits_or_probs, *, from_logits: bool | None = None) -> np.ndarray:
    """p(y) = mean_x p(y|x), float64 (C,): e.g. the p*(y) of :func:`mode_score` and :func:`am_score` from a
    classifier's predictions on real images. ``logits_or_probs`` (N, C) are read as in :func:`inception_score`."""
    x = _check_logits_or_probs(logits_or_probs)
    return _probabilities(x, from_logits).mean(axis=0)


def _check_label_distribution(label_distribution, c: int, name: str = "label_distribution") -> np.ndarray:
    p = np.asarray(label_distribution, np.float64)
    if p.shape != (c,):
        raise ValueError(f"{name} must have shape (C,) = ({c},), one entry per class, got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > _SUM_TOLERANCE:
        raise ValueError(
            f"{name} must be finite, >= 0 and sum to 1 (within {_SUM_TOLERANCE}); got "
            f"entries in [{p.min():.3g}, {p.max():.3g}] summing to {p.sum():.6g}"
        )
    return p


@jax.jit
def _label_terms(probs: jax.Array, reference: jax.Array) -> dict:
    marginal = jnp.mean(probs, axis=0)
    return {
        "marginal_entropy": -jnp.sum(xlogy(marginal, marginal)),
        "conditional_entropy": -jnp.mean(jnp.sum(xlogy(probs, probs), axis=1)),
        "kl_marginal_reference": jnp.sum(xlogy(marginal, marginal) - xlogy(marginal, reference)),
        "kl_reference_marginal": jnp.sum(xlogy(reference, reference) - xlogy(reference, marginal)),
    }


@x64
def mode_score(logits_or_probs, label_distribution, *, from_logits: bool | None = None) -> float:
    """MODE score (Che et al. 2017): ``exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y)))``, higher is better.

    That is the one-split Inception Score times ``exp(-KL(p(y) || p*(y)))``: p(y) is the samples' mean
    prediction and p* the real data's label distribution, so a class balance unlike the data's is
    penalised (IS only rewards a uniform one). This is the form of Xu et al.'s 2018 metric study. Borji's
    table writes p*(y) inside the first KL as well; read that way the p* terms cancel and the score
    equals the one-split IS for any p*.

    Args:
      logits_or_probs: (N, C), read as in :func:`inception_score`.
      label_distribution: (C,) p*(y), e.g. ``np.bincount(train_labels) / len(train_labels)`` or the
        classifier's mean prediction on real images; finite, >= 0, summing to 1 within 1e-4.
    """
    x = _check_logits_or_probs(logits_or_probs)
    reference = _check_label_distribution(label_distribution, x.shape[1])
    t = _label_terms(jnp.asarray(_probabilities(x, from_logits)), jnp.asarray(reference))
    return float(jnp.exp(t["marginal_entropy"] - t["conditional_entropy"] - t["kl_marginal_reference"]))


@x64
def am_score(logits_or_probs, label_distribution, *, from_logits: bool | None = None) -> float:
    """AM Score (Zhou et al. 2018): ``KL(p*(y) || p(y)) + E_x H(p(y|x))`` in nats; lower is better.

    0 exactly when every prediction is certain and the predicted classes have the data's frequencies
    p*; +inf when p(y), the samples' mean prediction, is 0 on a class that p* holds.

    Args: as in :func:`mode_score`.
    """
    x = _check_logits_or_probs(logits_or_probs)
    reference = _check_label_distribution(label_distribution, x.shape[1])
    t = _label_terms(jnp.asarray(_probabilities(x, from_logits)), jnp.asarray(reference))
    return float(t["kl_reference_marginal"] + t["conditional_entropy"])


def class_balance(labels, num_classes: int, *, reference=None) -> dict:
    """How evenly samples fall into classes, as a classifier labels them (Santurkar et al. 2018's test of mode
    collapse: a GAN that drops or starves some classes of a balanced dataset shows it in this histogram).

    Args:
      labels: (n,) ints in ``[0, num_classes)``, e.g. the argmax of :func:`mnist_classifier` logits of n samples.
      num_classes: C.
      reference: (C,) the balance expected, e.g. the real data's label frequencies; finite, >= 0, summing to 1
        within 1e-4. Default uniform.

    Returns a dict (float64 arithmetic):

    * ``counts`` (C,) and ``shares`` (C,) = counts / n;
    * ``kl_to_reference``: ``KL(shares || reference)`` in nats (0 log 0 = 0; inf when a class with samples has
      reference 0), the reverse KL of PacGAN's mode histogram;
    * ``total_variation``: ``sum |shares - reference| / 2``, in [0, 1];
    * ``chi2``, ``chi2_dof``, ``p_value``: Pearson's goodness-of-fit statistic ``sum (counts - n ref)^2 / (n ref)``
      over the classes of positive reference (inf if a sample falls in a class of reference 0), its degrees of
      freedom (those classes minus 1) and the upper tail ``P(chi2_dof > chi2)``, under the null that the labels
      are n independent draws from ``reference``;
    * ``missing_classes``: classes of positive reference that no sample fell in;
    * ``min_over_max``: the rarest class's share of positive reference over the commonest's, divided by their
      reference shares (1 for a perfect match, 0 when a class is missing).
    """
    num_classes = positive_int(num_classes, "num_classes", minimum=2)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty (n,) array of ints, got shape {y.shape} and dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, num_classes={num_classes}), got [{y.min()}, {y.max()}]")
    q = (
        np.full(num_classes, 1.0 / num_classes)
        if reference is None
        else _check_label_distribution(reference, num_classes, "reference")
    )
    counts = np.bincount(y, minlength=num_classes)
    n = len(y)
    shares = counts / n
    support = q > 0
    if np.any(counts[~support] > 0):
        kl = chi2 = float("inf")
    else:
        kl = float(
            np.sum(shares[support & (counts > 0)] * np.log(shares[support & (counts > 0)] / q[support & (counts > 0)]))
        )
        expected = n * q[support]
        chi2 = float(np.sum((counts[support] - expected) ** 2 / expected))
    dof = int(np.count_nonzero(support)) - 1
    relative = shares[support] / q[support]
    return {
        "counts": counts.tolist(),
        "shares": shares.tolist(),
        "kl_to_reference": kl,
        "total_variation": float(0.5 * np.sum(np.abs(shares - q))),
        "chi2": chi2,
        "chi2_dof": dof,
        "p_value": float(gammaincc(dof / 2, chi2 / 2)) if dof > 0 and np.isfinite(chi2) else (1.0 if dof == 0 else 0.0),
        "missing_classes": int(np.count_nonzero(support & (counts == 0))),
        "min_over_max": float(relative.min() / relative.max()) if relative.max() > 0 else 0.0,
    }
