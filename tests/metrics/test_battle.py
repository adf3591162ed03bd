"""GAM against error counts of its definition on random logits, the boundary convention (logit 0 is "fake"),
the winner rule and bad input."""

import numpy as np
import pytest

from gendl_jax.metrics import generative_adversarial_metric as gam


def test_ratios_match_counted_errors():
    rng = np.random.default_rng()
    t1, t2 = rng.normal(1.0, 1.5, size=300), rng.normal(1.1, 1.5, size=300)
    f12, f21 = rng.normal(-1.0, 1.0, size=200), rng.normal(-0.5, 1.0, size=250)
    out = gam(t1, t2, f12, f21, test_tolerance=10.0)
    e1, e2 = sum(v <= 0 for v in t1) / 300, sum(v <= 0 for v in t2) / 300
    e12, e21 = sum(v > 0 for v in f12) / 200, sum(v > 0 for v in f21) / 250
    assert (out["error_d1_test"], out["error_d2_test"]) == (e1, e2)
    assert (out["error_d1_on_model2"], out["error_d2_on_model1"]) == (e12, e21)
    assert out["r_test"] == pytest.approx(e1 / e2) and out["r_samples"] == pytest.approx(e12 / e21)
    assert out["winner"] == {True: "model 1", False: "model 2", None: "undecided"}[None if e12 == e21 else e12 < e21]


def test_winner_rule_and_boundaries():
    test = np.array([1.0, 1.0, 1.0, 0.0])  # logit 0 (D = 1/2) counts as an error on real data: error 1/4
    # D1 spots half of model 2's samples as real (0.0 is not > 0), D2 is fooled by all of model 1's: model 1 wins.
    out = gam(test, test, np.array([1.0, 0.0]), np.array([2.0, 3.0]))
    assert out["r_test"] == 1.0 and out["r_samples"] == 0.5 and out["winner"] == "model 1"
    assert gam(test, test, np.array([2.0, 3.0]), np.array([1.0, -1.0]))["winner"] == "model 2"
    # Discriminators too unequal on real data: undecided, whatever r_samples says.
    unequal = gam(test, np.array([1.0, 1.0, -1.0, -1.0]), np.array([1.0, -1.0]), np.array([2.0, 3.0]))
    assert unequal["r_test"] == 0.5 and unequal["winner"] == "undecided"
    # No errors anywhere: the ratios are undefined.
    clean = gam(np.ones(3), np.ones(3), -np.ones(3), -np.ones(3))
    assert np.isnan(clean["r_test"]) and np.isnan(clean["r_samples"]) and clean["winner"] == "undecided"
    assert gam(test, test, np.array([1.0]), np.array([-1.0]))["r_samples"] == np.inf


def test_gam_bad_input():
    x = np.zeros(4)
    with pytest.raises(ValueError, match=r"d1_on_test must be a non-empty \(n,\) array"):
        gam(np.zeros((2, 2)), x, x, x)
    with pytest.raises(ValueError, match="d2_on_model1 contains NaN"):
        gam(x, x, x, np.array([np.nan]))
    with pytest.raises(ValueError, match="test_tolerance must be a number >= 0"):
        gam(x, x, x, x, test_tolerance=-1)
