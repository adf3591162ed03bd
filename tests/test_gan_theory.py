"""experiments/gan_theory.py: its helpers against scipy quadrature and closed forms, and every part run end to end on
tiny sizes into tmp_path, with the written numbers recomputed here from the saved arrays (not only "files exist")."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

pytest.importorskip("sklearn")

TINY = (
    "--seeds 1 --d-steps 10 --d-batch 64 --mc-samples 500 "
    "--critic-steps 10 --critic-every 5 --critic-eval 500 --ring-steps 4 --ring-seeds 1 --ring-samples 200 "
    "--ae-steps 10 --ae-latent 32 --ae-under 8 --probe-steps 10 --jacobian-examples 3 "
    "--ae-models over linear contractive "
    "--osc-lrs 0.1 --osc-seeds 0 --osc-steps 20 --osc-every 10 --osc-samples 200 "
    "--inner-snapshots 5 10 --inner-steps 20 --inner-every 10 --inner-samples 200 --toy-width 16"
)


@pytest.fixture(scope="module")
def gt(experiment):
    return experiment("gan_theory")


@pytest.fixture(scope="module")
def run(gt, tmp_path_factory):
    out = tmp_path_factory.mktemp("gan_theory")
    results = gt.main(["--out", str(out), *TINY.split()])
    return out, results, dict(np.load(out / "arrays.npz"))


# ---- helpers against quadrature --------------------------------------------------------------------------------


def _pdfs(gt, name):
    (w, m, s), (loc, scale) = gt.PAIRS[name]["p"], gt.PAIRS[name]["q"]
    p = lambda x: sum(wi * scipy.stats.norm.pdf(x, mi, si) for wi, mi, si in zip(w, m, s))
    cdf_p = lambda x: sum(wi * scipy.stats.norm.cdf(x, mi, si) for wi, mi, si in zip(w, m, s))
    return p, (lambda x: scipy.stats.norm.pdf(x, loc, scale)), cdf_p, (lambda x: scipy.stats.norm.cdf(x, loc, scale))


def _quad(f):
    return scipy.integrate.quad(f, -30, 30, points=[-2, 0, 1.5, 2, 5], limit=500, epsabs=1e-12)[0]


@pytest.mark.parametrize("name", ["identical", "overlapping", "bimodal", "nearly_disjoint"])
def test_jsd_and_optimal_value_against_scipy_quadrature(gt, name):
    p, q, _, _ = _pdfs(gt, name)

    def half_kl(a, b):  # a log(a / m), 0 where a = 0
        m = 0.5 * (a + b)
        return a * math.log(a / m) if a > 0 else 0.0

    jsd = 0.5 * _quad(lambda x: half_kl(p(x), q(x))) + 0.5 * _quad(lambda x: half_kl(q(x), p(x)))
    pg, qg = gt.pair_densities(name)
    dx = gt.GRID[1] - gt.GRID[0]
    assert gt.jsd_on_grid(pg, qg) == pytest.approx(jsd, abs=2e-6)
    # The lecture's eq. (6): the value of eq. (5) at D* = p / (p + q) is 2 JSD - 2 log 2.
    assert gt.optimal_gan_value(pg, qg, dx) == pytest.approx(2 * jsd - math.log(4.0), abs=1e-6)
    with np.errstate(divide="ignore"):
        log_ratio = np.log(pg) - np.log(qg)  # the logit of D*
    finite = np.isfinite(log_ratio)
    assert gt.gan_value(log_ratio[finite], pg[finite], qg[finite], dx) == pytest.approx(2 * jsd - math.log(4), abs=1e-6)
    d_star = gt.optimal_discriminator(pg, qg)
    np.testing.assert_allclose(d_star[finite], pg[finite] / (pg[finite] + qg[finite]))
    # Any other discriminator does worse: here D* pushed 0.5 towards 1/2 in logit space.
    assert gt.gan_value(0.5 * log_ratio[finite], pg[finite], qg[finite], dx) <= 2 * jsd - math.log(4) + 1e-9
    if name == "nearly_disjoint":
        assert math.log(2) - jsd < 1e-5


@pytest.mark.parametrize("name", ["overlapping", "bimodal"])
def test_exact_w1_and_optimal_critic_against_quadrature(gt, name):
    _, _, cdf_p, cdf_q = _pdfs(gt, name)
    w1 = _quad(lambda x: abs(cdf_p(x) - cdf_q(x)))
    pg, qg = gt.pair_densities(name)
    assert gt.exact_w1_on_grid(pg, qg) == pytest.approx(w1, rel=1e-5)
    dx = gt.GRID[1] - gt.GRID[0]
    f = gt.optimal_critic_1d(pg, qg, dx)
    assert np.max(np.abs(np.diff(f))) <= dx * (1 + 1e-9)  # 1-Lipschitz
    assert np.sum(f * (pg - qg)) * dx == pytest.approx(w1, rel=1e-3)  # E_p f* - E_q f* = W1


def test_affine_generator_is_exact(gt):
    from gendl_jax.objectives import adversarial, wgan

    config = wgan.WGANConfig(hidden=(8, 6), latent_dim=2)
    state = wgan.init(jax.random.PRNGKey(0), config, {"x": np.zeros((5, 3, 2), np.float32)})
    state = gt.affine_generator(state, jnp.array([0.5, -1.0]), jnp.array([2.0, 0.3]))
    z = jax.random.normal(jax.random.PRNGKey(1), (100, 2))
    np.testing.assert_allclose(
        adversarial.generate(state, z), np.array([0.5, -1.0]) + np.array([2.0, 0.3]) * z, rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError, match="hidden widths"):
        small = wgan.init(jax.random.PRNGKey(0), wgan.WGANConfig(hidden=(3,), latent_dim=2), {"x": np.zeros((5, 3, 2))})
        gt.affine_generator(small, jnp.zeros(2), jnp.ones(2))


def test_mode_switches_and_identity_distance(gt):
    h = np.zeros((6, 8))
    h[[0, 1, 3, 4, 5], [2, 2, 0, 5, 5]] = 0.9
    h[2] = 1 / 8  # spread out: no dominant mode
    s = gt.dominant_mode_switches(h)
    assert s["dominant"] == [2, 2, -1, 0, 5, 5]
    assert (s["switches"], s["distinct_dominant_modes"]) == (2, 3)
    assert s["share_collapsed"] == pytest.approx(5 / 6)
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1))
    np.testing.assert_allclose(gt.identity_distance(lambda v: v, x), 0.0, atol=1e-7)
    np.testing.assert_allclose(gt.identity_distance(lambda v: 0.5 * v, x), 0.5, atol=1e-6)
    np.testing.assert_allclose(gt.identity_distance(lambda v: 0.0 * v + 1.0, x), 1.0, atol=1e-6)


# ---- the tiny run ------------------------------------------------------------------------------------------------


def test_files(run, gt):
    out, _, _ = run
    saved = json.loads((out / "results.json").read_text())
    assert list(saved["parts"]) == list(gt.PARTS)
    assert all(c.startswith("python experiments/gan_theory.py --out ") for c in saved["commands"].values())
    for name in gt.PARTS:
        path = out / f"{name}.png"
        assert path.stat().st_size < 1_000_000
        assert matplotlib.image.imread(path).ndim == 3
    tables = (out / "tables.md").read_text()
    for title in (
        "Optimal discriminator",
        "frozen generator",
        "whole WGAN",
        "Overcomplete",
        "Oscillation",
        "frozen discriminator",
    ):
        assert title in tables


def test_optimal_discriminator_numbers(run, gt):
    _, results, arrays = run
    part = results["parts"]["optimal_discriminator"]
    dx = gt.GRID[1] - gt.GRID[0]
    for i, label in enumerate(arrays["models"]):
        name = str(label).split("|")[0]
        p, q = gt.pair_densities(name)
        logits = arrays["logits"][i].astype(np.float64)
        value = float(np.sum(-p * np.logaddexp(0, -logits) - q * np.logaddexp(0, logits)) * dx)
        d = 1 / (1 + np.exp(-logits))
        row = part["pairs"][name]
        assert row["value_trained_quadrature"]["values"][0] == pytest.approx(value, abs=1e-6)
        # V(D, G) <= V(D*, G) = 2 JSD - log 4 for every D.
        assert value <= row["two_jsd_minus_log4"] + 1e-6
        assert row["value_optimal_quadrature"] == pytest.approx(row["two_jsd_minus_log4"], abs=1e-6)
        m = 0.5 * (p + q)
        err = np.abs(d - p / (p + q + 1e-300))
        assert row["mean_abs_error_weighted"]["values"][0] == pytest.approx(np.sum(m * err) * dx, abs=1e-6)


def test_weight_clipping_numbers(run, gt):
    _, results, arrays = run
    part = results["parts"]["weight_clipping"]
    _, _, cdf_p, cdf_q = _pdfs(gt, gt.CLIP_PAIR)
    assert part["critic"]["exact_w1"] == pytest.approx(_quad(lambda x: abs(cdf_p(x) - cdf_q(x))), rel=1e-5)
    x, slopes = arrays["clip_slope_grid"], arrays["clip_critic_slopes_on_grid"]
    gap = cdf_q(x) - cdf_p(x)
    for i, c in enumerate(gt.CLIPS):
        row = part["critic"]["rows"][str(c)]
        assert 0.0 <= row["at_bound"] <= 1.0
        # the normalised critic is 1-Lipschitz on the grid, so its dual value is at most W1
        assert row["ratio_to_exact_w1"] <= 1.0 + 1e-4
        quad = np.sum(slopes[i] * gap) * (x[1] - x[0])
        scale = np.abs(slopes[i]).max() * part["critic"]["exact_w1"]
        assert row["estimate_quadrature"] == pytest.approx(quad, rel=1e-3, abs=1e-4 * scale)
        assert row["max_slope_grid"] == pytest.approx(np.abs(slopes[i]).max(), rel=1e-5)
    ring = load_ring()
    for row, samples in zip(part["ring"]["per_model"], arrays["clip_ring_samples"]):
        d = np.linalg.norm(samples[:, None, :] - ring.modes[None], axis=-1)
        hq = d.min(1) <= 3 * ring.std
        assert row["high_quality"] == pytest.approx(hq.mean())
        assert row["modes"] == len(set(d.argmin(1)[hq].tolist()))


def load_ring():
    from gendl_jax.data import load_dataset

    return load_dataset("ring8").distribution


def test_autoencoder_rows(run):
    _, results, _ = run
    part = results["parts"]["overcomplete_ae"]
    rng = np.random.default_rng(11)
    uniform = rng.uniform(size=(part["rows"]["raw pixels"]["n_test"], 8, 8, 1))
    assert part["baselines"]["mse_uniform_if_reconstruction_is_a_constant_0.5"] == pytest.approx(
        np.mean((uniform - 0.5) ** 2)
    )
    rows = [r for name, r in part["rows"].items() if name != "raw pixels"]
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["linear_probe_accuracy"] <= 1.0
        assert r["jacobian_to_identity"] >= 0.0 and r["mse_uniform_noise"] >= 0.0


def test_oscillation_histograms(run, gt):
    _, results, arrays = run
    h = arrays["osc_histograms"]
    np.testing.assert_allclose(h.sum(-1), 1.0, atol=1e-9)
    for i, row in enumerate(results["parts"]["oscillation"]["rows"]):
        expected = "".join(str(m) if h[i, t].max() >= 0.5 else "." for t, m in enumerate(h[i].argmax(1)))
        assert row["dominant_sequence"] == expected
        assert row["switches"] == gt.dominant_mode_switches(h[i])["switches"]


def test_inner_loop_frozen_discriminator(run):
    _, results, arrays = run
    part = results["parts"]["inner_loop"]
    assert part["setup"]["discriminator_bitwise_unchanged"] is True
    for i, row in enumerate(part["rows"]):
        d = np.linalg.norm(arrays["inner_final_samples"][i] - np.array(row["argmax_d"]), axis=1)
        assert row["end"]["median_distance"] == pytest.approx(np.median(d), rel=1e-5)
        assert row["end"]["within_0.05"] == pytest.approx(np.mean(d < 0.05))
