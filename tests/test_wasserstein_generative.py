"""experiments/wasserstein_generative.py on tiny sizes (one seed, half-second budgets, 20 alignment steps) into
tmp_path: the equal-time budgets, the PacGAN numbers' ranges and the alignment cosines are checked, and the cosine
helper against cases with known answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

BUDGET = 0.5
ARGS = [
    "--parts",
    "toy",
    "alignment",
    "--datasets",
    "ring8",
    "--seeds",
    "1",
    "--toy-budget",
    str(BUDGET),
    "--timing-seconds",
    "0.2",
    "--toy-methods",
    "exact W2² (OT)",
    "WGAN-GP",
    "--n-samples",
    "200",
    "--n-w2",
    "100",
    "--align-steps",
    "20",
    "--align-every",
    "10",
    "--align-batch",
    "32",
    "--align-critics",
    "WGAN-GP",
]


def test_cosines_on_known_cases(experiment):
    cosines = experiment("wasserstein_generative").cosines
    d = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0]])
    g = np.array([[2.0, 0.0], [0.0, -1.0], [-4.0, 3.0], [0.0, 0.0], [1.0, 0.0]])
    c, length = cosines(g, d)  # the last two rows (a zero gradient, a zero displacement) are dropped
    np.testing.assert_allclose(c, [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(length, [1.0, 2.0, 5.0])


@pytest.mark.timeout(600)
def test_tiny_run_writes_equal_time_rows_and_cosines(tmp_path, experiment):
    module = experiment("wasserstein_generative")
    module.main([*ARGS, "--out", str(tmp_path)])
    record = json.loads((tmp_path / "results.json").read_text())
    rows = record["toy"]["rows"]
    assert {r["method"] for r in rows} == {"exact W2² (OT)", "WGAN-GP"}
    for row in rows:
        # equal wall-clock time: the steps are the budget over the measured time per step
        assert row["steps"] == module.budget_steps(row["timing_seconds_per_step"], BUDGET)
        (seed,) = row["per_seed"]
        assert 0 <= seed["modes"] <= seed["n_modes"] == 8 and 0.0 <= seed["high_quality"] <= 1.0
        assert seed["reverse_kl"] >= 0.0 and math.isfinite(seed["w2_to_data"]) and seed["w2_to_data"] > 0
    (critic,) = record["alignment"]["critics"].values()
    assert [point["step"] for point in critic["curve"]] == [10, 20]
    for point in critic["curve"]:
        for key, value in point.items():
            if key.startswith("cos_") and not math.isnan(value):
                assert -1.0 - 1e-9 <= value <= 1.0 + 1e-9, key
            if key.startswith("share_far") or key.endswith("_positive"):
                assert 0.0 <= value <= 1.0, key
    assert (tmp_path / "README.md").is_file()
