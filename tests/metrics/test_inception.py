"""Inception Score against a float64 numpy version of openai/improved-gan's loop, and closed forms."""

import numpy as np
import pytest
from scipy.special import softmax

from gendl_jax.metrics import inception_score


def _reference(probs, splits):
    scores = []
    n = probs.shape[0]
    for i in range(splits):
        part = probs[(i * n // splits):((i + 1) * n // splits), :]
        py = np.mean(part, 0)
        kl = []
        for row in part:
            kl.append(sum(p * (np.log(p) - np.log(q)) for p, q in zip(row, py) if p > 0))
        scores.append(np.exp(np.mean(kl)))
    return np.mean(scores), np.std(scores)


@pytest.mark.parametrize("seed,n,splits", [(0, 1003, 10), (1, 250, 7), (2, 64, 1)])
def test_matches_reference_from_logits_and_probs(seed, n, splits):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, 10)).astype(np.float32)
    probs = softmax(logits.astype(np.float64), axis=1)
    ref = _reference(probs, splits)
    np.testing.assert_allclose(inception_score(logits, splits), ref, rtol=1e-6)
    np.testing.assert_allclose(inception_score(probs, splits), ref, rtol=1e-10)


def test_closed_forms():
    # Confident, balanced predictions: IS = number of classes exactly (the upper bound).
    one_hot = np.eye(10)[np.arange(1000) % 10]
    mean, std = inception_score(one_hot, 10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    # Uninformative predictions: IS = 1.
    mean, _ = inception_score(np.full((100, 10), 0.1), 10)
    assert mean == pytest.approx(1.0, rel=1e-12)


def test_bad_input():
    p = np.full((20, 4), 0.2)  # rows sum to 0.8
    with pytest.raises(ValueError, match="do not sum to 1"):
        inception_score(p, 2)
    with pytest.raises(ValueError, match="rows summing to 1"):
        inception_score(p, 2, from_logits=False)
    with pytest.raises(ValueError, match="NaN"):
        inception_score(np.full((20, 4), np.nan), 2)
    with pytest.raises(ValueError, match="at least n_splits=10"):
        inception_score(np.zeros((5, 4)), 10)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        inception_score(np.zeros(10), 2)
