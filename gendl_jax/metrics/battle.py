"""Generative Adversarial Metric (GAM; Im et al. 2016, "Generating images with recurrent adversarial
networks"): two trained GANs battle by swapping discriminators (the "battle" row of Borji's table).

With ``err(D, S)`` the classification error of discriminator D on a set S (a real image counts as an error
when D(x) <= 1/2, i.e. logit <= 0; a generated one when D(x) > 1/2):

* ``r_test = err(D1, test) / err(D2, test)``: are the two discriminators equally good on held-out real
  data? The comparison is only meaningful when this is close to 1.
* ``r_samples = err(D1, G2 samples) / err(D2, G1 samples)``: a discriminator fooled less by the other
  model's samples than the other is by this model's. ``r_samples < 1`` means model 1 wins.

The function takes logits, so any discriminator works: for the library's GAN states,
``adversarial.discriminate(state, x)``.
"""

from __future__ import annotations

import numpy as np


def _logits(x, name: str) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (n,) array of discriminator logits, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return float("nan") if a == 0 else float("inf")
    return a / b


def generative_adversarial_metric(
    d1_on_test, d2_on_test, d1_on_model2, d2_on_model1, *, test_tolerance: float = 0.1
) -> dict:
    """GAM of model 1 against model 2 from discriminator logits.

    Args:
      d1_on_test, d2_on_test: (n,) logits of each model's discriminator on the same held-out real images.
      d1_on_model2: (m,) logits of model 1's discriminator on model 2's samples; d2_on_model1 the converse.
      test_tolerance: ``|r_test - 1|`` above which the battle is "undecided" (the discriminators differ
        too much on real data for ``r_samples`` to rank the generators); Im et al. ask for r_test ~ 1
        without a number, this default is ours.

    Returns a dict: ``r_test``, ``r_samples`` (inf / NaN when a denominator error is 0), the four error rates
    (``error_d1_test``, ``error_d2_test``, ``error_d1_on_model2``, ``error_d2_on_model1``) and ``winner``:
    ``"model 1"``, ``"model 2"`` or ``"undecided"`` (also when r_samples is exactly 1 or undefined).
    """
    if isinstance(test_tolerance, bool) or not isinstance(test_tolerance, (int, float)) or not test_tolerance >= 0:
        raise ValueError(f"test_tolerance must be a number >= 0, got {test_tolerance!r}")
    t1, t2 = _logits(d1_on_test, "d1_on_test"), _logits(d2_on_test, "d2_on_test")
    f12, f21 = _logits(d1_on_model2, "d1_on_model2"), _logits(d2_on_model1, "d2_on_model1")
    errors = {
        "error_d1_test": float(np.mean(t1 <= 0)),
        "error_d2_test": float(np.mean(t2 <= 0)),
        "error_d1_on_model2": float(np.mean(f12 > 0)),
        "error_d2_on_model1": float(np.mean(f21 > 0)),
    }
    r_test = _ratio(errors["error_d1_test"], errors["error_d2_test"])
    r_samples = _ratio(errors["error_d1_on_model2"], errors["error_d2_on_model1"])
    if not (np.isfinite(r_test) and abs(r_test - 1) <= test_tolerance) or np.isnan(r_samples) or r_samples == 1:
        winner = "undecided"
    else:
        winner = "model 1" if r_samples < 1 else "model 2"
    return {"r_test": r_test, "r_samples": r_samples, **errors, "winner": winner}
