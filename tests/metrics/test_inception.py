"""Inception Score against a float64 numpy version of openai/improved-gan's loop, and closed forms; m-IS,
MODE score and AM score against direct loops over their definitions."""

import numpy as np
import pytest
from scipy.special import logsumexp, softmax

from gendl_jax.metrics import (
    am_score,
    class_balance,
    inception_score,
    inception_score_breakdown,
    mean_prediction,
    mode_score,
    modified_inception_score,
)


def _reference(probs, splits):
    scores = []
    n = probs.shape[0]
    for i in range(splits):
        part = probs[(i * n // splits) : ((i + 1) * n // splits), :]
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


# --- m-IS, MODE score and AM score against direct float64 loops -------------------------------------------


def _kl(p, q):
    """KL(p || q) of two probability vectors by its definition (0 log 0 = 0; inf where q = 0 < p)."""
    total = 0.0
    for pi, qi in zip(p, q):
        if pi > 0:
            total += np.inf if qi == 0 else pi * (np.log(pi) - np.log(qi))
    return total


def _mis_reference(probs, groups, c):
    """(per-class m-IS, score): the score draws x_i from the samples of the classes with two or more, and x_j
    from the other samples of x_i's class."""
    per_class, per_sample_kl = [], []
    for k in range(c):
        members = probs[groups == k]
        if len(members) < 2:
            per_class.append(None)
            continue
        kls = [[_kl(members[i], members[j]) for j in range(len(members)) if j != i] for i in range(len(members))]
        per_class.append(float(np.exp(np.mean(kls))))
        per_sample_kl += [np.mean(row) for row in kls]
    return per_class, float(np.exp(np.mean(per_sample_kl)))


def _assert_per_class(got, want, rtol):
    assert [g is None for g in got] == [w is None for w in want]
    np.testing.assert_allclose([g for g in got if g is not None], [w for w in want if w is not None], rtol=rtol)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_modified_inception_score_matches_pair_loop(scale):
    rng = np.random.default_rng()
    n, c = int(rng.integers(60, 120)), 6
    logits = rng.normal(scale=scale, size=(n, c))
    probs = softmax(logits, axis=1)
    want, want_score = _mis_reference(probs, probs.argmax(1), c)
    out = modified_inception_score(logits)
    _assert_per_class(out["per_class"], want, rtol=1e-9)
    assert out["score"] == pytest.approx(want_score, rel=1e-9)
    assert out["class_counts"] == np.bincount(probs.argmax(1), minlength=c).tolist()
    # Given labels group the samples instead of the argmax; a class with one sample has no pair.
    labels = rng.integers(0, c - 1, size=n)
    labels[0] = c - 1
    labels[1:][labels[1:] == c - 1] = 0
    out = modified_inception_score(probs, labels)
    want, want_score = _mis_reference(probs, labels, c)
    _assert_per_class(out["per_class"], want, 1e-9)
    assert out["per_class"][c - 1] is None and out["score"] == pytest.approx(want_score, rel=1e-9)


def test_modified_inception_score_closed_forms():
    rng = np.random.default_rng()
    p = rng.dirichlet(np.ones(5))
    q = rng.dirichlet(np.ones(5))
    # Two samples of one class: the mean of KL(p||q) and KL(q||p).
    pair = modified_inception_score(np.stack([p, q]), np.array([2, 2]))
    assert pair["per_class"][2] == pytest.approx(np.exp((_kl(p, q) + _kl(q, p)) / 2), rel=1e-10)
    assert pair["score"] == pytest.approx(pair["per_class"][2], rel=1e-12)
    # Identical predictions within each class: m-IS = 1.
    same = modified_inception_score(np.repeat(np.eye(4), 3, axis=0))
    assert same["per_class"] == [1.0] * 4 and same["score"] == 1.0
    # A sample that gives probability 0 to a class another sample of its class holds: infinite KL.
    zero = np.array([[0.9, 0.1, 0.0], [0.8, 0.0, 0.2]])
    assert modified_inception_score(zero)["per_class"][0] == np.inf


def test_modified_inception_score_keeps_extreme_logits_finite():
    rng = np.random.default_rng()
    logits = rng.normal(scale=300.0, size=(40, 4))  # softmax underflows to exact zeros
    log_probs = logits - logsumexp(logits, axis=1, keepdims=True)
    probs = np.exp(log_probs)
    groups = probs.argmax(1)
    want = []
    for k in range(4):
        lp, pm = log_probs[groups == k], probs[groups == k]
        if len(lp) < 2:
            want.append(None)
            continue
        kls = [np.sum(pm[i] * (lp[i] - lp[j])) for i in range(len(lp)) for j in range(len(lp)) if i != j]
        want.append(float(np.exp(np.mean(kls))))
    got = modified_inception_score(logits, from_logits=True)["per_class"]
    assert all(np.isfinite(g) for g in got if g is not None)
    _assert_per_class(got, want, rtol=1e-9)


def _mode_score_reference(probs, reference):
    marginal = probs.mean(0)
    return np.exp(np.mean([_kl(p, marginal) for p in probs]) - _kl(marginal, reference))


@pytest.mark.parametrize("from_logits", [True, False])
def test_mode_score_and_am_score_match_definitions(from_logits):
    rng = np.random.default_rng()
    logits = rng.normal(scale=3.0, size=(int(rng.integers(50, 200)), 10))
    probs = softmax(logits, axis=1)
    x = logits if from_logits else probs
    reference = rng.dirichlet(np.full(10, 5.0))
    assert mode_score(x, reference) == pytest.approx(_mode_score_reference(probs, reference), rel=1e-9)
    marginal = probs.mean(0)
    want_am = _kl(reference, marginal) + np.mean([-np.sum(p * np.log(p)) for p in probs])
    assert am_score(x, reference) == pytest.approx(want_am, rel=1e-9)
    np.testing.assert_allclose(mean_prediction(x), marginal, rtol=1e-12)
    # With p* equal to the samples' own marginal the MODE score is the one-split IS.
    assert mode_score(x, marginal) == pytest.approx(inception_score(x, 1)[0], rel=1e-9)
    # Borji's table's form, p* in both KLs: the p* terms cancel, leaving the one-split IS for any p*.
    literal = np.exp(np.mean([_kl(p, reference) for p in probs]) - _kl(marginal, reference))
    assert literal == pytest.approx(inception_score(x, 1)[0], rel=1e-9)


def test_mode_score_and_am_score_closed_forms():
    one_hot = np.eye(4)[np.array([0] * 10 + [1] * 20 + [2] * 30 + [3] * 40)]
    data = np.array([0.1, 0.2, 0.3, 0.4])
    # Certain predictions with the data's class frequencies: AM = 0 and MODE = IS = exp(H(p*)).
    assert am_score(one_hot, data) == pytest.approx(0.0, abs=1e-12)
    assert mode_score(one_hot, data) == pytest.approx(np.exp(-np.sum(data * np.log(data))), rel=1e-12)
    # Against a uniform p*, the same samples lose exactly KL(p || uniform) (MODE) / gain KL(uniform || p) (AM).
    uniform = np.full(4, 0.25)
    assert mode_score(one_hot, uniform) == pytest.approx(
        np.exp(-np.sum(data * np.log(data)) - _kl(data, uniform)), rel=1e-12
    )
    assert am_score(one_hot, uniform) == pytest.approx(_kl(uniform, data), rel=1e-12)
    # A class p* holds but no sample predicts: AM is infinite, MODE is unaffected by that class's absence.
    assert am_score(np.eye(4)[[0, 1, 2] * 5], uniform) == np.inf


def test_label_scores_bad_input():
    probs = np.full((8, 4), 0.25)
    with pytest.raises(ValueError, match=r"label_distribution must have shape \(C,\) = \(4,\)"):
        mode_score(probs, np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="sum to 1"):
        am_score(probs, np.full(4, 0.2))
    with pytest.raises(ValueError, match=">= 0"):
        mode_score(probs, np.array([0.5, 0.7, -0.2, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        am_score(probs, np.array([0.5, np.nan, 0.25, 0.25]))
    with pytest.raises(ValueError, match="do not sum to 1"):
        mode_score(np.full((8, 4), 0.2), np.full(4, 0.25))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(8,\)"):
        modified_inception_score(probs, np.zeros(7, int))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, C\) = \[0, 4\)"):
        modified_inception_score(probs, np.array([0, 1, 2, 3, 4, 0, 1, 2]))
    with pytest.raises(TypeError, match="labels must be integers"):
        modified_inception_score(probs, np.zeros(8))
    with pytest.raises(ValueError, match="at least two samples"):
        modified_inception_score(np.eye(4))


@pytest.mark.parametrize("with_reference", [False, True])
def test_class_balance_matches_scipy(with_reference):
    """Counts, KL, TV and Pearson's test against scipy.stats (chisquare, entropy) on fresh random labels."""
    from scipy.stats import chisquare, entropy

    rng = np.random.default_rng()
    c = int(rng.integers(3, 12))
    reference = rng.dirichlet(np.ones(c)) if with_reference else np.full(c, 1 / c)
    labels = rng.choice(c, size=int(rng.integers(200, 2000)), p=rng.dirichlet(np.ones(c) * 5))
    out = class_balance(labels, c, reference=reference if with_reference else None)
    counts = np.bincount(labels, minlength=c)
    assert out["counts"] == counts.tolist()
    np.testing.assert_allclose(out["shares"], counts / len(labels), rtol=1e-15)
    assert out["kl_to_reference"] == pytest.approx(entropy(counts / len(labels), reference), rel=1e-10, abs=1e-14)
    assert out["total_variation"] == pytest.approx(0.5 * np.abs(counts / len(labels) - reference).sum(), rel=1e-12)
    ref = chisquare(counts, len(labels) * reference)
    assert out["chi2"] == pytest.approx(ref.statistic, rel=1e-10)
    assert out["p_value"] == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    assert out["chi2_dof"] == c - 1
    relative = counts / len(labels) / reference
    assert out["min_over_max"] == pytest.approx(relative.min() / relative.max(), rel=1e-12)
    assert out["missing_classes"] == int(np.sum(counts == 0))


def test_class_balance_closed_forms():
    # A perfect balance: every divergence 0, p-value 1.
    out = class_balance(np.repeat(np.arange(5), 7), 5)
    assert out["kl_to_reference"] == 0.0 and out["total_variation"] == 0.0 and out["chi2"] == 0.0
    assert out["p_value"] == pytest.approx(1.0) and out["min_over_max"] == 1.0
    # Collapse onto 2 of 10 classes (equal shares): KL = log 5, TV = 0.8, 8 classes missing.
    out = class_balance(np.repeat([3, 7], 50), 10)
    assert out["kl_to_reference"] == pytest.approx(np.log(5), rel=1e-14)
    assert out["total_variation"] == pytest.approx(0.8, rel=1e-14)
    assert out["missing_classes"] == 8 and out["min_over_max"] == 0.0 and out["p_value"] < 1e-30
    # A sample in a class the reference excludes: infinite KL and chi-square, p-value 0.
    out = class_balance(np.array([0, 1, 2, 2]), 3, reference=[0.5, 0.5, 0.0])
    assert out["kl_to_reference"] == np.inf and out["chi2"] == np.inf and out["p_value"] == 0.0
    assert out["chi2_dof"] == 1 and out["total_variation"] == pytest.approx(0.5)


def test_class_balance_bad_input():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=3\), got \[0, 3\]"):
        class_balance(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"labels must be a non-empty \(n,\) array of ints, got shape \(2, 2\)"):
        class_balance(np.zeros((2, 2), int), 3)
    with pytest.raises(ValueError, match="dtype float64"):
        class_balance(np.zeros(4), 3)
    with pytest.raises(ValueError, match=r"reference must have shape \(C,\) = \(3,\), one entry per class"):
        class_balance(np.zeros(4, int), 3, reference=[0.5, 0.5])
    with pytest.raises(ValueError, match="reference must be finite, >= 0 and sum to 1"):
        class_balance(np.zeros(4, int), 3, reference=[0.5, 0.6, 0.1])
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        class_balance(np.zeros(4, int), 1)


def test_inception_score_stays_finite_when_logits_span_thousands():
    """Logits spanning > 700 give probabilities below float64's normal range; the score is computed in log space."""
    from scipy.special import log_softmax, logsumexp

    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 400.0, size=(40, 12))
    got, _ = inception_score(logits, 4, from_logits=True)
    log_p = log_softmax(logits, axis=1)
    ref = []
    for part in np.split(log_p, 4):
        log_marginal = logsumexp(part, axis=0) - np.log(len(part))
        ref.append(np.exp(np.mean(np.sum(np.exp(part) * (part - log_marginal), axis=1))))
    assert np.isfinite(got) and got == pytest.approx(np.mean(ref), rel=1e-10)
