"""Autoencoders: penalties and corruptions against independent references, one-compile steps,
a short training run, the fit loop's run folder, and bad input."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from gendl_jax import cli, models
from gendl_jax.objectives import autoencoders as ae
from gendl_jax.objectives import contractive_ae, denoising_ae, get_objective, sparse_ae
from gendl_jax.train import TrainConfig, load_run, train_and_evaluate

TINY = dict(latent_dim=3, hidden=(8,))


# ----------------------------------------------------------------------------------------------
# Contractive penalty
# ----------------------------------------------------------------------------------------------


def _numpy_encoder(params, activation, code_activation):
    """float64 numpy forward pass of an MLPEncoder from its parameters."""
    acts = {"tanh": np.tanh, "sigmoid": special.expit, "linear": lambda h: h}
    layers = sorted(k for k in params if k.startswith("dense"))

    def forward(x):
        h = x.reshape(x.shape[0], -1)
        for name in layers:
            h = acts[activation](h @ np.float64(params[name]["kernel"]) + np.float64(params[name]["bias"]))
        return acts[code_activation](h @ np.float64(params["code"]["kernel"]) + np.float64(params["code"]["bias"]))

    return forward


def _finite_difference_frobenius_sq(f, x, eps=1e-5):
    """sum_ij (d f_j / d x_i)^2 per example by central differences in float64: x (m, D)."""
    m, d_in = x.shape
    total = np.zeros(m)
    for i in range(d_in):
        e = np.zeros(d_in)
        e[i] = eps
        total += np.sum(np.square((f(x + e) - f(x - e)) / (2 * eps)), axis=1)
    return total


@pytest.mark.parametrize("features,d_in", [(3, 10), (12, 5)])  # reverse mode (d < D) and forward mode
def test_jacobian_penalty_matches_finite_differences(features, d_in):
    rng = np.random.default_rng(1)
    enc = models.MLPEncoder(features, hidden=(7,), activation="tanh", code_activation="sigmoid")
    x = rng.normal(size=(6, d_in)).astype(np.float32)
    params = enc.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), x)["params"]
    got = jax.jit(lambda p, x: contractive_ae.jacobian_frobenius_sq(lambda u: enc.apply({"params": p}, u), x))(
        params, x
    )
    want = _finite_difference_frobenius_sq(_numpy_encoder(params, "tanh", "sigmoid"), np.float64(x))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4)


def test_one_layer_sigmoid_closed_form():
    rng = np.random.default_rng(2)
    d_in, d = 9, 4
    enc = models.MLPEncoder(d, hidden=(), code_activation="sigmoid")
    x = rng.normal(size=(5, d_in)).astype(np.float32)
    params = enc.init(jax.random.PRNGKey(3), x)["params"]
    kernel, bias = params["code"]["kernel"], params["code"]["bias"]
    closed = jax.jit(contractive_ae.sigmoid_layer_jacobian_frobenius_sq)(kernel, bias, x)
    autodiff = jax.jit(lambda x: contractive_ae.jacobian_frobenius_sq(lambda u: enc.apply({"params": params}, u), x))(x)
    brute = _finite_difference_frobenius_sq(_numpy_encoder(params, "tanh", "sigmoid"), np.float64(x))
    np.testing.assert_allclose(np.asarray(closed), brute, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(autodiff), np.asarray(closed), rtol=1e-5)


def test_jacobian_penalty_of_image_encoder_has_one_entry_per_example():
    rng = np.random.default_rng(4)
    enc = models.ConvEncoder(3, base_features=2, hidden=5)
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    params = enc.init(jax.random.PRNGKey(0), x)["params"]
    f = lambda u: enc.apply({"params": params}, u)
    got = np.asarray(jax.jit(lambda x: contractive_ae.jacobian_frobenius_sq(f, x))(x))
    # Brute force: the whole-batch Jacobian (2, 3, 2, 8, 8, 1) by forward mode, then its diagonal blocks.
    full = np.asarray(jax.jit(jax.jacfwd(f))(x))
    want = [np.sum(np.square(full[i, :, i])) for i in range(2)]
    assert np.abs(full[0, :, 1]).max() == 0  # no coupling between examples
    np.testing.assert_allclose(got, want, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# Losses and sparsity penalties
# ----------------------------------------------------------------------------------------------


def test_reconstruction_losses_match_scipy():
    rng = np.random.default_rng(5)
    x = (rng.random((4, 3, 3, 1)) < 0.4).astype(np.float32)
    logits = rng.normal(size=x.shape).astype(np.float32) * 3
    got = jax.jit(ae.bernoulli_log_likelihood)(x, logits)
    want = stats.bernoulli.logpmf(x, special.expit(np.float64(logits))).reshape(4, -1).sum(1)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    y = rng.random(x.shape).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(jax.jit(ae.squared_error)(x, y)), np.sum(np.square(np.float64(x) - y).reshape(4, -1), 1), rtol=1e-5
    )


def test_sparsity_penalties_match_references():
    rng = np.random.default_rng(6)
    codes = rng.random((50, 7)).astype(np.float32)
    rho = 0.05
    rho_hat = np.float64(codes).mean(0)
    want = np.sum(special.rel_entr(rho, rho_hat) + special.rel_entr(1 - rho, 1 - rho_hat))
    np.testing.assert_allclose(float(jax.jit(sparse_ae.kl_sparsity, static_argnums=1)(codes, rho)), want, rtol=1e-5)
    signed = codes - 0.5
    np.testing.assert_allclose(
        np.asarray(jax.jit(sparse_ae.l1_sparsity)(signed)), np.abs(np.float64(signed)).sum(1), rtol=1e-5
    )


# ----------------------------------------------------------------------------------------------
# Corruptions
# ----------------------------------------------------------------------------------------------

N_PIXELS = 200_000


def _binomial_ok(count, n, p, sigmas=5):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masking_statistics(p):
    x = jnp.asarray(np.random.default_rng(7).uniform(0.2, 0.8, N_PIXELS), jnp.float32)
    y = np.asarray(jax.jit(denoising_ae.corrupt, static_argnums=(2, 3))(jax.random.PRNGKey(8), x, "masking", p))
    masked = y != np.asarray(x)
    assert _binomial_ok(masked.sum(), N_PIXELS, p)
    assert np.all(y[masked] == 0.0)


def test_salt_and_pepper_statistics():
    p = 0.3
    x = jnp.asarray(np.random.default_rng(9).uniform(0.2, 0.8, N_PIXELS), jnp.float32)
    y = np.asarray(
        jax.jit(denoising_ae.corrupt, static_argnums=(2, 3))(jax.random.PRNGKey(10), x, "salt_and_pepper", p)
    )
    hit = y != np.asarray(x)
    assert _binomial_ok(hit.sum(), N_PIXELS, p)
    assert set(np.unique(y[hit])) == {0.0, 1.0}
    assert _binomial_ok((y[hit] == 1.0).sum(), hit.sum(), 0.5)


def test_gaussian_corruption_statistics():
    sigma = 0.2
    x = jnp.asarray(np.random.default_rng(11).random(N_PIXELS), jnp.float32)
    noise = (
        np.float64(jax.jit(denoising_ae.corrupt, static_argnums=(2, 3))(jax.random.PRNGKey(12), x, "gaussian", sigma))
        - x
    )
    assert abs(noise.mean()) < 5 * sigma / np.sqrt(N_PIXELS)
    # Var of the sample variance of a normal: 2 sigma^4 / (n - 1).
    assert abs(noise.var(ddof=1) - sigma**2) < 5 * sigma**2 * np.sqrt(2 / N_PIXELS)
    assert stats.kstest(noise / sigma, "norm").pvalue > 1e-3


# ----------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------

IMAGE = (8, 8, 1)
CASES = [
    ("ae", ae.AutoencoderConfig(reconstruction="mse", decoder_output="linear", **TINY), (5,)),
    ("ae", ae.AutoencoderConfig(model="conv", base_features=2, **TINY), IMAGE),
    ("sparse-ae", sparse_ae.SparseAEConfig(**TINY), IMAGE),
    ("sparse-ae", sparse_ae.SparseAEConfig(sparsity="l1", code_activation="relu", **TINY), IMAGE),
    ("denoising-ae", denoising_ae.DenoisingAEConfig(corruption="salt_and_pepper", **TINY), IMAGE),
    ("denoising-ae", denoising_ae.DenoisingAEConfig(corruption="gaussian", noise_level=0.5, **TINY), (5,)),
    ("contractive-ae", contractive_ae.ContractiveAEConfig(model="conv", base_features=2, **TINY), IMAGE),
]


@pytest.mark.parametrize("name,config,shape", CASES)
def test_step_compiles_once_and_is_deterministic(name, config, shape):
    obj = get_objective(name)
    rng = np.random.default_rng(13)
    batch_of = lambda: {"x": rng.random((1, 6, *shape)).astype(np.float32)}
    state = obj.init(jax.random.PRNGKey(0), config, batch_of())

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch):
        return obj.step(state, batch)

    first = None
    for i in range(3):
        batch = batch_of()
        new_state, metrics = step(state, batch)
        if i == 0:
            first = (state, batch, new_state, metrics)
        state = new_state
    chex.clear_trace_counter()
    s0, b0, s1, m1 = first
    again, m_again = step(s0, b0)
    chex.assert_trees_all_equal((again, m_again), (s1, m1))
    assert int(state.step) == 3
    assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    expected = {"loss", "reconstruction", "mse", "grad_norm"}
    expected |= {"sparse-ae": {"sparsity_penalty", "mean_code"}, "contractive-ae": {"jacobian_frobenius_sq"}}.get(
        name, set()
    )
    assert set(metrics) == expected


def test_step_loss_is_the_written_out_objective():
    """The contractive loss equals reconstruction + lambda * ||J||_F^2 computed outside the step
    (the penalty on the first ``penalty_examples`` rows)."""
    rng = np.random.default_rng(14)
    config = contractive_ae.ContractiveAEConfig(hidden=(), latent_dim=4, contractive_weight=0.3, penalty_examples=3)
    x = rng.random((5, 6)).astype(np.float32)
    state = ae.init(jax.random.PRNGKey(1), config, {"x": x})
    _, metrics = jax.jit(ae.step)(state, {"x": x})
    p = jax.device_get(state.params)
    kernel, bias = np.float64(p["encoder"]["code"]["kernel"]), np.float64(p["encoder"]["code"]["bias"])
    h = special.expit(np.float64(x) @ kernel + bias)
    logits = h @ np.float64(p["decoder"]["output"]["kernel"]) + np.float64(p["decoder"]["output"]["bias"])
    recon = -np.mean(np.sum(x * np.log(special.expit(logits)) + (1 - x) * np.log(special.expit(-logits)), 1))
    jac = np.mean((np.square(h * (1 - h)) @ np.sum(np.square(kernel), 0))[:3])  # first 3 examples only
    np.testing.assert_allclose(float(metrics["reconstruction"]), recon, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["jacobian_frobenius_sq"]), jac, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]), recon + 0.3 * jac, rtol=1e-5)


@pytest.fixture(scope="module")
def digits():
    from gendl_jax.data import load_dataset

    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    return train.images.astype(np.float32) / 16, test.images.astype(np.float32) / 16


@pytest.mark.parametrize(
    "config",
    [ae.AutoencoderConfig(latent_dim=8, hidden=(64,)), denoising_ae.DenoisingAEConfig(latent_dim=8, hidden=(64,))],
)
def test_short_training_lowers_the_test_loss(digits, config):
    train_x, test_x = digits
    state = ae.init(jax.random.PRNGKey(0), config, {"x": train_x[:2]})
    step = jax.jit(ae.step)
    mse = jax.jit(lambda s, x: jnp.mean(jnp.square(ae.reconstruct(s, x) - x)))
    before = float(mse(state, test_x))
    rng = np.random.default_rng(0)
    for _ in range(300):
        state, _ = step(state, {"x": train_x[rng.choice(len(train_x), 64, replace=False)]})
    after = float(mse(state, test_x))
    assert after < 0.5 * before, (before, after)


# ----------------------------------------------------------------------------------------------
# Fit loop and CLI
# ----------------------------------------------------------------------------------------------


def test_cli_trains_an_autoencoder_and_writes_its_run_folder(tmp_path, capsys):
    out = tmp_path / "cae"
    cli.main(
        [
            "train",
            "contractive-ae",
            "--data",
            "digits",
            "--latent-dim",
            "2",
            "--hidden",
            "16",
            "--steps",
            "20",
            "--batch-size",
            "32",
            "--out",
            str(out),
            "--log-every",
            "10",
            "--no-progress",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    for picture in ("reconstructions.png", "interpolations.png"):
        assert (out / picture).stat().st_size > 1000
    assert not (out / "samples.npy").exists()  # an autoencoder has no prior to sample
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20] and "jacobian_frobenius_sq" in rows[0]
    # The summary's test error is that of the saved state on the [0, 1]-scaled test digits.
    from gendl_jax.data import load_dataset

    test = load_dataset("digits", split="test")
    x = test.images.astype(np.float32) / 16
    _, state, record = load_run(out)
    assert record["objective"] == "contractive-ae"
    want = np.mean(np.square(np.float64(ae.reconstruct(state, jnp.asarray(x))) - x))
    np.testing.assert_allclose(summary["test_reconstruction_mse"], want, rtol=1e-5)
    with pytest.raises(SystemExit):  # `gendl sample` refuses a model without a prior, with one line
        cli.main(["sample", str(out), "-n", "3"])
    assert "no prior to sample from" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # and so does `gendl eval`
        cli.main(["eval", str(out), "-n", "50"])
    assert "no prior to sample from" in capsys.readouterr().err


def test_fit_loop_feeds_images_in_unit_range(tmp_path):
    """Bernoulli objectives refuse [-1, 1] data, so a finished run shows the fit loop scaled to [0, 1]."""
    summary = train_and_evaluate(
        "ae",
        ae.AutoencoderConfig(**TINY),
        TrainConfig(data="digits", steps=3, batch_size=16, out=str(tmp_path / "r"), progress=False, log_every=1),
    )
    assert summary["steps"] == 3 and 0 < summary["test_reconstruction_mse"] < 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ae.init(jax.random.PRNGKey(0), ae.AutoencoderConfig(**TINY), {"x": -np.ones((2, 8, 8, 1), np.float32)})


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config,match",
    [
        (ae.AutoencoderConfig(latent_dim=0), "latent_dim"),
        (ae.AutoencoderConfig(hidden=(4, 0)), "hidden"),
        (ae.AutoencoderConfig(reconstruction="poisson"), "reconstruction"),
        (sparse_ae.SparseAEConfig(code_activation="relu"), "code_activation"),
        (sparse_ae.SparseAEConfig(sparsity_target=1.0), "sparsity_target"),
        (denoising_ae.DenoisingAEConfig(noise_level=1.5), "noise_level"),
        (denoising_ae.DenoisingAEConfig(corruption="blur"), "corruption"),
        (contractive_ae.ContractiveAEConfig(contractive_weight=-1.0), "contractive_weight"),
        (contractive_ae.ContractiveAEConfig(penalty_examples=-1), "penalty_examples"),
        (ae.AutoencoderConfig(learning_rate=0.0), "learning_rate"),
        (ae.AutoencoderConfig(lr_schedule="cosine"), "lr_schedule_steps"),
    ],
)
def test_bad_configs_are_rejected(config, match):
    with pytest.raises(ValueError, match=match):
        ae.init(jax.random.PRNGKey(0), config, {"x": np.zeros((2, 8, 8, 1), np.float32)})


def test_bad_batches_are_rejected():
    config = ae.AutoencoderConfig(**TINY)
    state = ae.init(jax.random.PRNGKey(0), config, {"x": np.zeros((2, 8, 8, 1), np.float32)})
    with pytest.raises(ValueError, match=r"batch\['x'\] must lie in \[0, 1\]"):
        ae.step(state, {"x": np.full((2, 8, 8, 1), 1.5, np.float32)})
    with pytest.raises(ValueError, match=r"batch\['x'\] must have shape"):
        ae.step(state, {"x": np.zeros((2, 7, 8, 1), np.float32)})
    with pytest.raises(TypeError, match="floating-point"):
        ae.step(state, {"x": np.zeros((2, 8, 8, 1), np.uint8)})
    with pytest.raises(ValueError, match="multiples of 4"):
        ae.init(
            jax.random.PRNGKey(0), ae.AutoencoderConfig(model="conv", **TINY), {"x": np.zeros((2, 6, 6, 1), np.float32)}
        )
    # MSE reconstruction accepts any finite range.
    mse_state = ae.init(
        jax.random.PRNGKey(0),
        ae.AutoencoderConfig(reconstruction="mse", **TINY),
        {"x": np.full((2, 8, 8, 1), -3.0, np.float32)},
    )
    assert np.isfinite(float(ae.step(mse_state, {"x": np.full((2, 8, 8, 1), -3.0, np.float32)})[1]["loss"]))
