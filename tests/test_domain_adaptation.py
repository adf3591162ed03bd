"""experiments/domain_adaptation.py on tiny sizes (60 source and 60 target digits), into tmp_path; its outputs are checked
by numbers recomputed here: the 1-NN baseline, the exact map against scipy's assignment, the class-regularised plan
against a plain numpy majoration-minimisation on the explicit cost matrix, and the agreement with POT."""

from __future__ import annotations

import json

import jax
import matplotlib.image
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

pytest.importorskip("ot")

ARGS = ["--n-source", "60", "--n-target", "60", "--epsilons", "0.05", "--etas", "1", "--outer-iterations", "3"]


@pytest.fixture(scope="module")
def module(experiment):
    return experiment("domain_adaptation")


@pytest.fixture(scope="module")
def run(module, mnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("domain_adaptation")
    results = module.main([*ARGS, "--data-dir", str(mnist_dir), "--out", str(out)])
    return out, results


def _features(module, mnist_dir, n: int, shift: str, seed: int = 3):
    xs, ys, xt, yt = module.load_domains(n, n, seed, mnist_dir)
    fs, ft = xs.reshape(n, -1), module.shift_images(xt, shift).reshape(n, -1)
    scale = module.median_scale(fs, ft)
    return fs / scale, ys, ft / scale, yt


def _sq_distances(x, y):
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def test_files_and_json(run, mnist_dir):
    out, _ = run
    for name in ("projection", "digits"):
        path = out / f"{name}.png"
        assert path.stat().st_size < 1_000_000
        assert matplotlib.image.imread(path).ndim == 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["command"] == "python experiments/domain_adaptation.py " + " ".join(
        [*ARGS, "--data-dir", str(mnist_dir), "--out", str(out)]
    )
    assert [s["shift"] for s in saved["shifts"]] == ["brightness", "rotation"]
    for record in saved["shifts"]:
        assert 0.0 <= record["source_only_accuracy"] <= 1.0 and 0.0 <= record["no_shift_accuracy"] <= 1.0
        names = [m["name"] for m in record["methods"]]
        assert names == ["exact OT", "Sinkhorn eps=0.05", "class-reg. lp-l1 eps=0.05 eta=1"]
        for m in record["methods"]:
            for key in ("accuracy", "pot_accuracy", "same_class_mass", "pot_same_class_mass"):
                assert 0.0 <= m[key] <= 1.0, (m["name"], key)
            assert all(isinstance(v, bool) for v in m["converged"])
            assert m["seconds"] > 0 and m["pot_seconds"] > 0
        lpl1 = record["methods"][2]
        assert len(lpl1["converged"]) == 3


def test_baseline_recomputed(module, run, mnist_dir):
    _, results = run
    xs, ys, xt, yt = module.load_domains(60, 60, 0, mnist_dir)
    for record in results["shifts"]:
        target = module.shift_images(xt, record["shift"]).reshape(60, -1)
        predicted = ys[np.argmin(_sq_distances(target, xs.reshape(60, -1)), axis=1)]
        assert record["source_only_accuracy"] == pytest.approx(np.mean(predicted == yt))


def test_exact_accuracy_is_the_same_class_mass(run):
    """n_s = n_t with uniform weights: the exact plan is a permutation, each transported source digit sits on one
    target digit, and the 1-NN of that target digit is its matched source digit."""
    _, results = run
    for record in results["shifts"]:
        exact = record["methods"][0]
        assert exact["accuracy"] == pytest.approx(exact["same_class_mass"], abs=1e-12)


def test_agreement_with_pot(run):
    _, results = run
    for record in results["shifts"]:
        exact, sinkhorn, lpl1 = record["methods"]
        assert exact["max_abs_diff_transported"] < 1e-9
        assert sinkhorn["max_abs_diff_transported"] < 1e-4
        for m in (exact, sinkhorn):
            assert m["marginal_errors"]["rows_l1"] < 1e-5 and m["marginal_errors"]["columns_l1"] < 1e-5
        # Each class-regularised solve is 200 Sinkhorn iterations unless converged, ours and POT's from the same
        # start: the same truncated iterates, rows exact and the same column error.
        assert lpl1["max_abs_diff_transported"] < 1e-6
        assert lpl1["marginal_errors"]["rows_l1"] < 1e-10
        assert lpl1["marginal_errors"]["columns_l1"] == pytest.approx(
            lpl1["pot_marginal_errors"]["columns_l1"], rel=1e-4, abs=1e-12
        )


@pytest.mark.parametrize("shift", ["brightness", "rotation"])
def test_exact_map_is_the_assignment(module, mnist_dir, shift):
    fs, _, ft, _ = _features(module, mnist_dir, 40, shift)
    with jax.enable_x64(True):
        plan, moved = module.exact_transport(fs, ft)
    rows, cols = linear_sum_assignment(_sq_distances(fs, ft))
    expected = np.empty_like(ft)
    expected[rows] = ft[cols]
    np.testing.assert_allclose(np.asarray(moved), expected, rtol=0, atol=1e-12)
    permutation = np.zeros((40, 40))
    permutation[rows, cols] = 1 / 40
    np.testing.assert_allclose(np.asarray(plan), permutation, rtol=0, atol=1e-15)


def _numpy_lpl1(cost, ys, epsilon, eta, outer_iterations, inner_iterations):
    """Majoration-minimisation of the l_1/2-l_1 class-regularised entropic OT on the explicit cost matrix: each solve is
    ``inner_iterations`` log-domain Sinkhorn iterations from zero potentials, the column potential updated first."""
    n, m = cost.shape
    onehot = np.eye(10)[ys]
    weights = np.zeros((10, m))
    for _ in range(outer_iterations):
        reweighted = cost + eta * weights[ys]
        f = np.zeros(n)
        for _ in range(inner_iterations):
            g = -epsilon * logsumexp((f[:, None] - reweighted) / epsilon, axis=0) - epsilon * np.log(m)
            f = -epsilon * logsumexp((g[None, :] - reweighted) / epsilon, axis=1) - epsilon * np.log(n)
        plan = np.exp((f[:, None] + g[None, :] - reweighted) / epsilon)
        weights = 0.5 * (onehot.T @ plan + 1e-3) ** -0.5
    return plan


@pytest.mark.parametrize("eta", [0.1, 1.0])
def test_class_regularised_plan_is_the_reweighted_sinkhorn(module, mnist_dir, eta):
    """The augmented points give the Sinkhorn iterates of the re-weighted cost matrix C + eta W (same number of
    iterations: the threshold is never reached)."""
    fs, ys, ft, _ = _features(module, mnist_dir, 40, "rotation")
    with jax.enable_x64(True):
        plan, moved, converged = module.class_regularised_transport(
            fs, ys, ft, epsilon=0.05, eta=eta, outer_iterations=4, threshold=1e-300, max_iterations=300
        )
    plan, moved = np.asarray(plan), np.asarray(moved)
    assert np.asarray(converged).tolist() == [False] * 4
    expected = _numpy_lpl1(_sq_distances(fs, ft), ys, 0.05, eta, 4, 300)
    np.testing.assert_allclose(plan, expected, rtol=0, atol=1e-9 * expected.max())
    np.testing.assert_allclose(moved, (expected @ ft) / expected.sum(1, keepdims=True), rtol=0, atol=1e-9)
    np.testing.assert_allclose(plan.sum(1), np.full(40, 1 / 40), rtol=1e-10)


def test_class_regularised_plan_marginals(module, mnist_dir):
    """Solved to convergence, the plan has the uniform marginals, and the class regulariser concentrates each target
    sample's mass on fewer source classes than plain Sinkhorn at the same epsilon."""
    fs, ys, ft, _ = _features(module, mnist_dir, 40, "rotation")
    with jax.enable_x64(True):
        plan, _, converged = module.class_regularised_transport(
            fs, ys, ft, epsilon=0.1, eta=0.1, outer_iterations=4, threshold=1e-10, max_iterations=20_000
        )
        sinkhorn, _, sinkhorn_converged = module.sinkhorn_transport(
            fs, ft, epsilon=0.1, threshold=1e-10, max_iterations=20_000
        )
    plan, sinkhorn = np.asarray(plan), np.asarray(sinkhorn)
    assert np.asarray(converged).tolist() == [True] * 4 and bool(sinkhorn_converged)
    np.testing.assert_allclose(plan.sum(1), np.full(40, 1 / 40), rtol=1e-8)
    np.testing.assert_allclose(plan.sum(0), np.full(40, 1 / 40), rtol=1e-8)
    onehot = np.eye(10)[ys]

    def classes_per_target(p):  # perplexity of the source classes sending mass to each target sample, averaged
        share = onehot.T @ p / p.sum(0)
        return float(np.mean(np.exp(-(share * np.log(np.maximum(share, 1e-300))).sum(0))))

    assert classes_per_target(plan) < classes_per_target(sinkhorn)


def test_shifts(module):
    images = np.random.default_rng(0).uniform(size=(3, 28, 28))
    np.testing.assert_allclose(module.shift_images(images, "brightness"), np.minimum(images + 0.5, 1))
    np.testing.assert_allclose(module.shift_images(images, "inversion"), 1 - images)
    rotated = module.shift_images(images, "rotation")
    assert rotated.shape == images.shape and rotated.min() >= 0 and rotated.max() <= 1
    with pytest.raises(ValueError, match="shift must be one of"):
        module.shift_images(images, "blur")
