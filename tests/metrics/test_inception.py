"""Inception Score against a float64 numpy version of openai/improved-gan's loop, and closed forms."""

import numpy as np
import pytest
from scipy.special import softmax

from gendl_jax.metrics import inception_score, inception_score_breakdown


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


@pytest.mark.parametrize("seed", [0, 1])
def test_breakdown_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    # Dirichlet rows with a few near-certain ones, so that both sides of the threshold are populated.
    probs = rng.dirichlet(np.full(10, 0.3), size=997)
    logits = np.log(probs + 1e-12) + rng.normal(size=(997, 1))  # same softmax, shifted per row
    out = inception_score_breakdown(logits, threshold=0.8, quantiles=(0.1, 0.5), n_splits=5, from_logits=True)
    p = softmax(logits, axis=1)
    marginal = p.mean(0)
    h_marginal = -np.sum(marginal * np.log(marginal))
    h_conditional = -np.mean(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1))
    assert out["class_balance"] == pytest.approx(np.exp(h_marginal), rel=1e-9)
    assert out["confidence"] == pytest.approx(np.exp(-h_conditional), rel=1e-9)
    # The decomposition is exact: one-split IS = balance x confidence = the reference loop with one split.
    assert out["inception_score_one_split"] == pytest.approx(_reference(p, 1)[0], rel=1e-9)
    assert out["inception_score_one_split"] == pytest.approx(out["class_balance"] * out["confidence"], rel=1e-12)
    top = p.max(1)
    assert out["predicted_class_histogram"] == np.bincount(p.argmax(1), minlength=10).tolist()
    np.testing.assert_allclose(list(out["top_probability_quantiles"].values()), np.quantile(top, [0.1, 0.5]), rtol=1e-9)
    assert out["fraction_below_threshold"] == pytest.approx(np.mean(top < 0.8))
    assert out["n_confident"] == int(np.sum(top >= 0.8)) and 10 < out["n_confident"] < 987
    np.testing.assert_allclose(out["inception_score_confident"], _reference(p[top >= 0.8], 5), rtol=1e-9)


def test_breakdown_closed_forms_and_bad_input():
    one_hot = np.eye(4)[np.arange(100) % 4]
    out = inception_score_breakdown(one_hot, n_splits=4)
    assert out["class_balance"] == pytest.approx(4.0) and out["confidence"] == pytest.approx(1.0)
    assert out["fraction_below_threshold"] == 0.0 and out["predicted_class_histogram"] == [25] * 4
    uniform = inception_score_breakdown(np.full((50, 5), 0.2))
    assert uniform["confidence"] == pytest.approx(0.2) and uniform["inception_score_confident"] is None
    with pytest.raises(ValueError, match="threshold"):
        inception_score_breakdown(one_hot, threshold=1.5)
    with pytest.raises(ValueError, match="quantiles"):
        inception_score_breakdown(one_hot, quantiles=(0.5, 2.0))
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score_breakdown(np.full((10, 4), 0.2))
