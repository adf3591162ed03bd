"""The VAE: KL and densities against closed forms / scipy / Monte Carlo, the importance-weighted bound
against the exact log-likelihood of a linear Gaussian model, one-compile steps, a short training
run, binarisation and bad input."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gendl_jax import cli
from gendl_jax.objectives import vae


def _numpy_gaussian_kl(mean, var):
    """KL(N(mean, diag var) || N(0, I)) by the general formula 0.5 (tr S + m'm - d - log det S), float64."""
    cov = np.diag(var)
    return 0.5 * (np.trace(cov) + mean @ mean - len(mean) - np.linalg.slogdet(cov)[1])


def test_kl_matches_closed_form_and_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(scale=0.7, size=(4, 3)).astype(np.float32)
    got = np.asarray(jax.jit(vae.gaussian_kl_to_standard)(mean, log_var))
    want = [_numpy_gaussian_kl(np.float64(m), np.exp(np.float64(v))) for m, v in zip(mean, log_var)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Monte Carlo: E_q[log q(z) - log p(z)] with 200,000 draws, within 5 standard errors.
    n = 200_000
    for m, v, kl in zip(np.float64(mean), np.float64(log_var), got):
        z = m + np.exp(v / 2) * rng.normal(size=(n, 3))
        diff = stats.multivariate_normal(m, np.diag(np.exp(v))).logpdf(z) - stats.multivariate_normal(
            np.zeros(3), np.eye(3)
        ).logpdf(z)
        assert abs(diff.mean() - kl) < 5 * diff.std() / np.sqrt(n)


def test_densities_match_scipy():
    rng = np.random.default_rng(1)
    z, mean = rng.normal(size=(2, 5, 3)).astype(np.float32)
    log_var = rng.normal(size=(5, 3)).astype(np.float32)
    got = jax.jit(vae.diagonal_gaussian_log_density)(z, mean, log_var)
    want = [
        stats.multivariate_normal(m, np.diag(np.exp(np.float64(v)))).logpdf(np.float64(zi))
        for zi, m, v in zip(z, mean, log_var)
    ]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    config = vae.VAEConfig(likelihood="gaussian", binarization="none", decoder_std=0.3)
    x, mu = rng.random((2, 4, 2, 2, 1)).astype(np.float32)
    got = jax.jit(vae.log_likelihood, static_argnums=0)(config, x, mu)
    want = stats.norm(np.float64(mu), 0.3).logpdf(np.float64(x)).reshape(4, -1).sum(1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# A linear Gaussian VAE: log p(x) = log N(x; b, W W' + s^2 I) exactly.
# ----------------------------------------------------------------------------------------------

LINEAR = vae.VAEConfig(
    latent_dim=2, hidden=(), likelihood="gaussian", binarization="none", decoder_std=0.5, learning_rate=1e-2
)


def _exact_log_px(state, x):
    dec = jax.device_get(state.params["decoder"]["output"])
    w, b = np.float64(dec["kernel"]), np.float64(dec["bias"])  # (2, D), (D,)
    cov = w.T @ w + LINEAR.decoder_std**2 * np.eye(w.shape[1])
    return stats.multivariate_normal(b, cov).logpdf(np.float64(x))


@pytest.fixture(scope="module")
def trained_linear_vae():
    """A linear Gaussian VAE trained for 400 steps on a 4-D Gaussian."""
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(4, 4))
    sample = lambda n: (rng.normal(size=(n, 4)) @ mix * 0.5 + 1.0).astype(np.float32)
    state = vae.init(jax.random.PRNGKey(0), LINEAR, {"x": sample(2)})
    step = jax.jit(vae.step)
    first = None
    for _i in range(400):
        state, metrics = step(state, {"x": sample(128)})
        first = first if first is not None else float(metrics["loss"])
    return state, sample(1024), first, float(metrics["loss"])


def test_iwae_converges_to_the_exact_log_likelihood_from_below(trained_linear_vae):
    state, x, _, _ = trained_linear_vae
    exact = _exact_log_px(state, x)
    ks = (1, 4, 32, 5000)
    bounds = {
        k: np.asarray(jax.jit(vae.iwae_bound, static_argnums=(3, 4))(state, x, jax.random.PRNGKey(k), k, 250))
        for k in ks
    }
    means = [bounds[k].mean() for k in ks]
    assert np.all(np.diff(means) > 0), means  # increases with k
    assert exact.mean() - 0.01 <= means[-1] <= exact.mean() + 0.01, (means, exact.mean())
    # Per example: close to exact for most points (a few with a poor proposal converge more slowly).
    assert np.median(np.abs(bounds[5000] - exact)) < 0.02


def test_iwae_is_above_the_elbo_and_equals_it_in_expectation_at_k1(trained_linear_vae):
    state, x, _, _ = trained_linear_vae
    x = x[:100]
    ev = vae.evaluate(state, x, jax.random.PRNGKey(3), k=200, batch_size=16, chunk=50)
    assert ev["n"] == 100 and ev["k"] == 200
    exact = _exact_log_px(state, x).mean()
    assert ev["elbo"] < ev["iwae"] <= exact + 0.01
    np.testing.assert_allclose(ev["nll"], -ev["iwae"])
    # k = 1: the importance weight's log is an unbiased estimate of the ELBO.
    keys = jax.random.split(jax.random.PRNGKey(7), 200)
    repeats = np.asarray(jax.jit(jax.vmap(lambda key: vae.iwae_bound(state, x, key, 1)))(keys))
    terms = jax.jit(jax.vmap(lambda key: vae.elbo_terms(state, state.params, jnp.asarray(x), key)))(keys[::-1])
    draws = np.asarray(terms["log_px_given_z"])  # independent draws of the reconstruction term
    elbo = draws.mean() - float(np.mean(terms["kl"]))
    se = np.sqrt(repeats.var() / repeats.size + draws.var() / draws.size)
    assert abs(repeats.mean() - elbo) < 5 * se


def test_training_lowers_the_loss(trained_linear_vae):
    _, _, first, last = trained_linear_vae
    assert last < first - 1.0


# ----------------------------------------------------------------------------------------------
# Steps, schedule, binarisation
# ----------------------------------------------------------------------------------------------

CASES = [
    (vae.VAEConfig(latent_dim=2, hidden=(8,)), (8, 8, 1)),
    (vae.VAEConfig(latent_dim=2, hidden=(8,), model="conv", base_features=2), (8, 8, 1)),
    (vae.VAEConfig(latent_dim=2, hidden=(8,), likelihood="gaussian", binarization="none", beta=4.0), (5,)),
]


@pytest.mark.parametrize("config,shape", CASES)
def test_step_compiles_once_and_is_deterministic(config, shape):
    rng = np.random.default_rng(4)
    batch_of = lambda: {"x": rng.random((1, 6, *shape)).astype(np.float32)}
    state = vae.init(jax.random.PRNGKey(0), config, batch_of())

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch):
        return vae.step(state, batch)

    first = None
    for _i in range(3):
        batch = batch_of()
        new_state, metrics = step(state, batch)
        first = first or (state, batch, new_state, metrics)
        state = new_state
    chex.clear_trace_counter()
    s0, b0, s1, m1 = first
    chex.assert_trees_all_equal(step(s0, b0), (s1, m1))
    assert set(metrics) == {"loss", "elbo", "log_px_given_z", "kl", "grad_norm"}
    m = jax.device_get(metrics)
    np.testing.assert_allclose(m["loss"], -m["log_px_given_z"] + config.beta * m["kl"], rtol=1e-5)


def test_burda_learning_rate_schedule():
    config = vae.VAEConfig(lr_schedule="burda", lr_schedule_steps=10)
    schedule = vae.learning_rate_schedule(config)
    starts = np.cumsum([0] + [10 * 3**i for i in range(7)])  # stage i starts after 10 * (1 + 3 + ... + 3^(i-1))
    for i, start in enumerate(starts):
        np.testing.assert_allclose(float(schedule(int(start))), 1e-3 * 10 ** (-i / 7), rtol=1e-5)
        if start:
            np.testing.assert_allclose(float(schedule(int(start) - 1)), 1e-3 * 10 ** (-(i - 1) / 7), rtol=1e-5)


def test_binarisation_statistics():
    x = jnp.asarray(np.random.default_rng(5).random(100_000), jnp.float32)
    b = np.asarray(jax.jit(vae.binarize)(jax.random.PRNGKey(6), x))
    assert set(np.unique(b)) == {0.0, 1.0}
    resid = b - np.asarray(x)  # mean 0, variance sum x(1 - x)
    assert abs(resid.sum()) < 5 * np.sqrt(np.sum(np.float64(x) * (1 - x)))
    from gendl_jax.data import ArrayDataset, binarize_dataset

    images = np.random.default_rng(7).integers(0, 256, (500, 4, 4, 1)).astype(np.uint8)
    fixed = binarize_dataset(ArrayDataset("toy", images, None, 255), seed=3)
    again = binarize_dataset(ArrayDataset("toy", images, None, 255), seed=3)
    assert fixed.max_value == 1 and np.array_equal(fixed.images, again.images)
    p = images / 255.0
    assert abs(fixed.images.sum() - p.sum()) < 5 * np.sqrt(np.sum(p * (1 - p)))


def test_cli_vae_run_folder_with_a_2d_latent(tmp_path):
    out = tmp_path / "vae"
    cli.main(
        [
            "train",
            "vae",
            "--data",
            "digits",
            "--latent-dim",
            "2",
            "--hidden",
            "16",
            "--steps",
            "10",
            "--batch-size",
            "32",
            "--binarization",
            "fixed",
            "--eval-importance-samples",
            "20",
            "--eval-examples",
            "50",
            "--out",
            str(out),
            "--no-progress",
            "--log-every",
            "5",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    for picture in ("reconstructions.png", "interpolations.png", "manifold.png", "samples_0000010.png"):
        assert (out / picture).stat().st_size > 1000
    assert summary["binarization"] == "fixed" and "binarised once (seed 0, fixed" in summary["test_data"]
    assert summary["test_n"] == 50 and summary["test_k"] == 20
    assert summary["test_elbo"] < summary["test_iwae"] < 0
    samples = np.load(out / "samples.npy")
    assert samples.shape == (2500, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config,match",
    [
        (vae.VAEConfig(latent_dim=0), "latent_dim"),
        (vae.VAEConfig(likelihood="gaussian"), "binarization"),
        (vae.VAEConfig(decoder_std=0.0), "decoder_std"),
        (vae.VAEConfig(beta=-1.0), "beta"),
        (vae.VAEConfig(lr_schedule="burda"), "lr_schedule_steps"),
        (vae.VAEConfig(eval_importance_samples=0), "eval_importance_samples"),
    ],
)
def test_bad_configs_are_rejected(config, match):
    with pytest.raises(ValueError, match=match):
        vae.init(jax.random.PRNGKey(0), config, {"x": np.zeros((2, 8, 8, 1), np.float32)})


def test_bad_data_and_k_are_rejected():
    config = vae.VAEConfig(latent_dim=2, hidden=(4,))
    with pytest.raises(ValueError, match=r"example_batch\['x'\] must lie in \[0, 1\]"):
        vae.init(jax.random.PRNGKey(0), config, {"x": np.full((2, 8, 8, 1), -1.0, np.float32)})
    state = vae.init(jax.random.PRNGKey(0), config, {"x": np.zeros((2, 8, 8, 1), np.float32)})
    with pytest.raises(ValueError, match=r"batch\['x'\] must lie in \[0, 1\]"):
        vae.step(state, {"x": np.full((2, 8, 8, 1), 2.0, np.float32)})
    x = np.zeros((3, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match="k .* >= 1"):
        vae.evaluate(state, x, jax.random.PRNGKey(0), k=0)
    with pytest.raises(ValueError, match="x must have shape"):
        vae.evaluate(state, np.zeros((3, 7, 7, 1), np.float32), jax.random.PRNGKey(0), k=2)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        vae.evaluate(state, x + 3, jax.random.PRNGKey(0), k=2)
