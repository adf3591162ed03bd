"""The importance-weighted autoencoder: the k-sample bound against a float64 numpy recomputation (networks and
densities) at the same draws, k = 1 against the VAE's step, gradients against float64 finite differences, the
bound's order in k and its limit on a linear Gaussian model with a closed-form log p(x), the multi-device form,
bad k, and `gendl train iwae` / `gendl sample` on tiny data."""

from __future__ import annotations

import dataclasses
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from gendl_jax import cli
from gendl_jax.objectives import OBJECTIVES, iwae, vae

TINY = dict(latent_dim=3, hidden=(7,))
CONFIGS = {
    "bernoulli": (iwae.IWAEConfig(**TINY), (4, 4, 1)),
    "gaussian": (iwae.IWAEConfig(**TINY, likelihood="gaussian", binarization="none", decoder_std=0.4), (5,)),
}


def _state(config, shape, seed=0):
    x = np.random.default_rng(seed).random((2, *shape)).astype(np.float32)
    return vae.init(jax.random.PRNGKey(seed), config, {"x": x})


# ----------------------------------------------------------------------------------------------
# float64 numpy reference: the MLP encoder / decoder (tanh) and the log densities
# ----------------------------------------------------------------------------------------------


def _np_mlp(params, h, hidden):
    p = jax.tree_util.tree_map(np.float64, jax.device_get(params))
    for i in range(len(hidden)):
        h = np.tanh(h @ p[f"dense{i}"]["kernel"] + p[f"dense{i}"]["bias"])
    last = p["code"] if "code" in p else p["output"]
    return h @ last["kernel"] + last["bias"]


def _np_bound(state, x, eps):
    """(L_k estimate, ELBO of the same draws, ESS) per example, float64, from the parameters and the draws eps (k, n, d).

    log p(h) and log q(h|x) by scipy.stats.norm, log p(x|h) by scipy's Bernoulli / normal log densities; the
    bound by scipy.special.logsumexp (k >= 2) or log p(x|h_1) - KL in closed form (k = 1, as the module does)."""
    config = state.config
    n, d = x.shape[0], config.latent_dim
    x64 = np.float64(x).reshape(n, -1)
    enc = _np_mlp(state.params["encoder"], x64, config.hidden)
    mean, log_var = enc[:, :d], enc[:, d:]
    std = np.exp(0.5 * log_var)
    h = mean + std * np.float64(eps)  # (k, n, d)
    out = _np_mlp(state.params["decoder"], h.reshape(-1, d), tuple(reversed(config.hidden))).reshape(
        eps.shape[0], n, -1
    )
    if config.likelihood == "bernoulli":
        log_px = stats.bernoulli(special.expit(out)).logpmf(x64).sum(-1)
    else:
        log_px = stats.norm(out, config.decoder_std).logpdf(x64).sum(-1)
    log_pz = stats.norm(0, 1).logpdf(h).sum(-1)
    log_qz = stats.norm(mean, std).logpdf(h).sum(-1)
    kl = np.sum(0.5 * (mean**2 + np.exp(log_var) - 1 - log_var), axis=-1)
    log_w = log_px + log_pz - log_qz
    k = eps.shape[0]
    bound = log_px[0] - kl if k == 1 else special.logsumexp(log_w, axis=0) - np.log(k)
    wbar = special.softmax(log_w, axis=0)
    return bound, log_px.mean(0) - kl, 1 / np.sum(wbar**2, axis=0)


@pytest.mark.parametrize("likelihood", sorted(CONFIGS))
@pytest.mark.parametrize("k", [1, 2, 7])
def test_bound_matches_a_float64_numpy_recomputation(likelihood, k):
    config, shape = CONFIGS[likelihood]
    config = dataclasses.replace(config, k=k)
    rng = np.random.default_rng(10 + k)
    state = _state(config, shape, seed=k)
    # perturb the weights so that the encoder's spread and the decoder are not at their initial scale
    params = jax.tree_util.tree_map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(np.float32), state.params)
    state = state.replace(params=params)
    x = rng.random((6, *shape)).astype(np.float32)
    if likelihood == "bernoulli":
        x = (x > 0.5).astype(np.float32)
    key = jax.random.PRNGKey(100 + k)
    terms = jax.jit(iwae.bound_terms, static_argnums=4)(state, state.params, jnp.asarray(x), key, k)
    eps = np.asarray(jax.jit(iwae.draws, static_argnums=(1, 2, 3))(key, 6, config.latent_dim, k))
    assert eps.shape == (k, 6, config.latent_dim)
    bound, elbo, ess = _np_bound(state, x, eps)
    np.testing.assert_allclose(np.asarray(terms["iwae_bound"]), bound, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(np.asarray(terms["elbo"]), elbo, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(np.asarray(terms["ess"]), ess, rtol=1e-4)
    assert np.all(np.asarray(terms["ess"]) >= 1 - 1e-5) and np.all(np.asarray(terms["ess"]) <= k + 1e-4)


def test_draws_are_standard_normal_and_the_first_is_the_vaes():
    key = jax.random.PRNGKey(3)
    many = np.asarray(iwae.draws(key, 400, 5, 50))
    assert abs(many.mean()) < 5 / np.sqrt(many.size) and abs(many.var() - 1) < 5 * np.sqrt(2 / many.size)
    np.testing.assert_array_equal(many[0], np.asarray(iwae.draws(key, 400, 5, 1))[0])
    np.testing.assert_array_equal(many[0], np.asarray(vae.latent_noise(key, (400, 5), jnp.float32)))
    assert stats.kstest(many[1:].ravel()[:20000], "norm").pvalue > 1e-4


# ----------------------------------------------------------------------------------------------
# k = 1 is the VAE
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", sorted(CONFIGS))
def test_k1_step_equals_the_vae_step(likelihood):
    config, shape = CONFIGS[likelihood]
    config = dataclasses.replace(config, k=1)
    vae_config = vae.VAEConfig(**{f.name: getattr(config, f.name) for f in dataclasses.fields(vae.VAEConfig)})
    state = _state(config, shape, seed=5)
    rng = np.random.default_rng(6)
    batch = {"x": rng.random((1, 8, *shape)).astype(np.float32)}
    new_i, m_i = jax.jit(iwae.step)(state, batch)
    new_v, m_v = jax.jit(vae.step)(state.replace(config=vae_config), batch)
    for name in ("loss", "elbo", "log_px_given_z", "kl", "grad_norm"):
        np.testing.assert_allclose(float(m_i[name]), float(m_v[name]), rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(float(m_i["iwae_bound"]), float(m_v["elbo"]), rtol=1e-6)
    assert float(m_i["ess"]) == 1.0
    np.testing.assert_array_equal(np.asarray(new_i.key), np.asarray(new_v.key))
    chex.assert_trees_all_close(new_i.params, new_v.params, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(new_i.opt_state, new_v.opt_state, atol=1e-6, rtol=1e-6)


def test_step_compiles_once_is_deterministic_and_reports_its_metrics():
    config, shape = CONFIGS["bernoulli"]
    state = _state(config, shape)
    rng = np.random.default_rng(8)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch):
        return iwae.step(state, batch)

    batches = [{"x": rng.random((1, 6, *shape)).astype(np.float32)} for _ in range(3)]
    outs = []
    for batch in batches:
        new_state, metrics = step(state, batch)
        outs.append((state, batch, new_state, metrics))
        state = new_state
    chex.clear_trace_counter()
    s0, b0, s1, m1 = outs[0]
    chex.assert_trees_all_equal(step(s0, b0), (s1, m1))
    assert set(metrics) == {"loss", "iwae_bound", "elbo", "log_px_given_z", "kl", "ess", "grad_norm"}
    m = jax.device_get(metrics)
    np.testing.assert_allclose(m["loss"], -m["iwae_bound"], rtol=1e-6)
    np.testing.assert_allclose(m["elbo"], m["log_px_given_z"] - m["kl"], rtol=1e-5)
    assert 1 <= m["ess"] <= config.k and int(state.step) == 3


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", sorted(CONFIGS))
@pytest.mark.parametrize("k", [1, 5])
def test_gradient_matches_float64_finite_differences(likelihood, k):
    config, shape = CONFIGS[likelihood]
    config = dataclasses.replace(config, k=k)
    with jax.enable_x64(True):
        state = _state(config, shape, seed=20 + k)
        rng = np.random.default_rng(21 + k)
        params = jax.tree_util.tree_map(
            lambda a: jnp.asarray(np.float64(a) + 0.3 * rng.normal(size=a.shape)), state.params
        )
        x = jnp.asarray(rng.random((5, *shape)))
        key = jax.random.PRNGKey(22 + k)

        def loss(params):
            return -jnp.mean(iwae.bound_terms(state, params, x, key, k)["iwae_bound"])

        value, grads = jax.jit(jax.value_and_grad(loss))(params)
        assert value.dtype == jnp.float64
        f = jax.jit(loss)
        leaves, tree = jax.tree_util.tree_flatten(params)
        h = 1e-6
        for _ in range(3):  # random directions through all parameters
            direction = jax.tree_util.tree_unflatten(tree, [jnp.asarray(rng.normal(size=a.shape)) for a in leaves])
            moved = lambda t, direction=direction: jax.tree_util.tree_map(lambda a, v: a + t * v, params, direction)
            fd = (float(f(moved(h))) - float(f(moved(-h)))) / (2 * h)
            pairs = zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction), strict=True)
            analytic = sum(float(jnp.vdot(g, v)) for g, v in pairs)
            np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# A linear Gaussian model: p(h) = N(0, I_2), p(x|h) = N(A h + b, s^2 I_4), log p(x) = log N(x; b, A A' + s^2 I)
# ----------------------------------------------------------------------------------------------

S = 0.5
LINEAR = iwae.IWAEConfig(latent_dim=2, hidden=(), likelihood="gaussian", binarization="none", decoder_std=S)


def _linear_model(seed=30):
    """A linear Gaussian IWAE whose encoder is a deliberately imperfect posterior: the exact posterior mean
    shrunk by 0.85 and a variance 1.3x the exact one (a proposal wider than the posterior keeps the weights bounded)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 4)), rng.normal(size=4)  # decoder kernel (d, D) and bias: mean A'h + b
    post_cov = np.linalg.inv(np.eye(2) + a @ a.T / S**2)  # (2, 2)
    gain = post_cov @ a / S**2  # posterior mean = gain (x - b)
    state = vae.init(jax.random.PRNGKey(0), LINEAR, {"x": np.zeros((2, 4), np.float32)})
    kernel = np.concatenate([0.85 * gain.T, np.zeros((4, 2))], axis=1)  # (D, 2d): mean, log_var
    bias = np.concatenate([-0.85 * gain @ b, np.log(1.3 * np.diag(post_cov))])
    params = {
        "encoder": {"code": {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}},
        "decoder": {"output": {"kernel": jnp.asarray(a, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}},
    }
    chex.assert_trees_all_equal_shapes(params, state.params)
    state = state.replace(params=params)
    exact = lambda x: stats.multivariate_normal(b, a.T @ a + S**2 * np.eye(4)).logpdf(np.float64(x))
    x = (rng.normal(size=(64, 2)) @ a + b + S * rng.normal(size=(64, 4))).astype(np.float32)
    return state, x, exact(x)


def test_linear_gaussian_bound_increases_with_k_towards_the_exact_log_likelihood():
    state, x, exact = _linear_model()
    repeats = 200

    def mean_bound(k, seed):
        keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
        f = jax.jit(jax.vmap(lambda key: iwae.bound_terms(state, state.params, jnp.asarray(x), key, k)["iwae_bound"]))
        return np.float64(f(keys)).mean(axis=1)  # (repeats,): the batch mean of each repeat

    means, ses = {}, {}
    for k in (1, 5, 50):
        per_repeat = mean_bound(k, k)
        means[k], ses[k] = per_repeat.mean(), per_repeat.std() / np.sqrt(repeats)
    target = exact.mean()
    gaps = [target - means[k] for k in (1, 5, 50)]
    # L_1 < L_5 < L_50 <= log p(x), each step significant
    for lo, hi in ((1, 5), (5, 50)):
        assert means[hi] - means[lo] > 5 * np.hypot(ses[lo], ses[hi]), (means, ses)
    assert means[50] <= target + 3 * ses[50], (means, target)
    assert gaps[0] > gaps[1] > gaps[2] > -3 * ses[50], gaps
    # k = 1 in expectation is the exact ELBO of the linear model (closed form: E_q log p(x|h) - KL)
    # and large k reaches log p(x): k = 2,000 within 0.01 nats on the batch mean
    big = np.float64(
        jax.jit(lambda key: iwae.bound_terms(state, state.params, jnp.asarray(x), key, 2000))(jax.random.PRNGKey(99))[
            "iwae_bound"
        ]
    )
    assert abs(big.mean() - target) < 0.01 and big.mean() <= target + 0.01, (big.mean(), target)
    assert gaps[0] > 0.2  # the imperfect proposal leaves a visible ELBO gap to close


def test_linear_gaussian_k1_mean_is_the_closed_form_elbo():
    state, x, _ = _linear_model()
    enc, dec = state.params["encoder"]["code"], state.params["decoder"]["output"]
    x64 = np.float64(x)
    out = x64 @ np.float64(enc["kernel"]) + np.float64(enc["bias"])
    mean, var = out[:, :2], np.exp(out[:, 2:])
    a, b = np.float64(dec["kernel"]), np.float64(dec["bias"])
    # E_q log N(x; A'h + b, s^2 I) = log N(x; A'mu + b, s^2 I) - tr(A' diag(var) A) / (2 s^2)
    rec = stats.norm(mean @ a + b, S).logpdf(x64).sum(1) - np.einsum("nd,dj->n", var, a**2) / (2 * S**2)
    kl = 0.5 * np.sum(mean**2 + var - 1 - np.log(var), axis=1)
    keys = jax.random.split(jax.random.PRNGKey(4), 400)
    draws = np.float64(
        jax.jit(jax.vmap(lambda key: iwae.bound_terms(state, state.params, jnp.asarray(x), key, 1)["iwae_bound"]))(keys)
    )
    per_repeat = draws.mean(1)
    assert abs(per_repeat.mean() - (rec - kl).mean()) < 5 * per_repeat.std() / np.sqrt(len(keys))


# ----------------------------------------------------------------------------------------------
# Multi-device: vmap with an axis name stands in for pmap over 2 devices
# ----------------------------------------------------------------------------------------------


def test_two_shards_with_axis_name_equal_one_device():
    config, shape = CONFIGS["bernoulli"]
    state = _state(config, shape, seed=40)
    x = np.random.default_rng(41).random((8, *shape)).astype(np.float32)
    one, m_one = jax.jit(iwae.step)(state, {"x": x})
    shards = {"x": x.reshape(2, 4, *shape)}
    states = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), state)
    two, m_two = jax.jit(jax.vmap(lambda s, b: iwae.step(s, b, axis_name="d"), axis_name="d"))(states, shards)
    chex.assert_trees_all_close(jax.tree_util.tree_map(lambda a: a[0], two.params), one.params, atol=1e-5, rtol=1e-5)
    for name in m_one:
        np.testing.assert_allclose(float(m_two[name][0]), float(m_one[name]), rtol=1e-5, err_msg=name)


# ----------------------------------------------------------------------------------------------
# Config, registry, CLI
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -3, 2.5, True, "5"])
def test_bad_k_is_rejected(k):
    with pytest.raises(ValueError, match=r"\bk\b.*--k"):
        iwae.IWAEConfig(k=k).validate()
    with pytest.raises(ValueError, match="--k"):
        iwae.init(jax.random.PRNGKey(0), iwae.IWAEConfig(k=k), {"x": np.zeros((2, 4, 4, 1), np.float32)})


def test_beta_other_than_one_is_rejected_and_vae_checks_still_apply():
    with pytest.raises(ValueError, match="beta"):
        iwae.IWAEConfig(beta=2.0).validate()
    with pytest.raises(ValueError, match="latent_dim"):
        iwae.IWAEConfig(latent_dim=0).validate()


def test_registry_declares_iwae_like_vae():
    obj, ref = OBJECTIVES["iwae"], OBJECTIVES["vae"]
    assert obj.family == ref.family == "vae" and obj.config_cls is iwae.IWAEConfig
    assert obj.samplers(obj.config_cls()) == ref.samplers(ref.config_cls()) == ("plain",)
    assert obj.value_range == ref.value_range and obj.train_defaults == ref.train_defaults
    assert obj.report is vae.report and obj.prepare_dataset is vae.prepare_dataset and obj.sample is vae.sample


def test_cli_bad_k_is_one_clear_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "iwae", "--k", "0", "--data", "digits", "--steps", "1", "--no-progress"])
    assert exit_info.value.code == 1
    assert "--k" in capsys.readouterr().err


def test_cli_train_iwae_then_sample(tmp_path, capsys):
    out = tmp_path / "iwae"
    args = ["train", "iwae", "--k", "5", "--data", "digits", "--latent-dim", "2", "--hidden", "16"]
    args += ["--steps", "10", "--batch-size", "32", "--binarization", "fixed", "--eval-importance-samples", "20"]
    args += ["--eval-examples", "50", "--out", str(out), "--no-progress", "--log-every", "5", "--n-samples", "100"]
    cli.main(args)
    summary = json.loads(capsys.readouterr().out)
    assert json.loads((out / "config.json").read_text())["config"]["k"] == 5
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    for row in rows:
        assert row["iwae_bound"] >= row["elbo"] - 1.0 and 1 <= row["ess"] <= 5
        np.testing.assert_allclose(row["loss"], -row["iwae_bound"], rtol=1e-5)
    assert summary["test_n"] == 50 and summary["test_k"] == 20
    assert summary["test_elbo"] < summary["test_iwae"] < 0
    assert (out / "reconstructions.png").stat().st_size > 1000
    assert np.load(out / "samples.npy").shape == (100, 8, 8, 1)
    cli.main(["sample", str(out), "-n", "7", "--out", str(tmp_path / "s.npy"), "--no-progress"])
    drawn = np.load(tmp_path / "s.npy")
    assert drawn.shape == (7, 8, 8, 1) and drawn.min() >= 0 and drawn.max() <= 1
