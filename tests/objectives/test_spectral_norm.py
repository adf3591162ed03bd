"""Spectral normalisation of the discriminator / critic (Miyato et al. 2018) and the ``wgan-sn`` objective:
the power-iteration estimate against numpy's SVD, the normalised network against a float64 numpy forward pass
with exactly normalised kernels (values, 1-Lipschitz input gradients, parameter gradients by finite
differences), and the train step against the algorithm written out."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gendl_jax import models
from gendl_jax.objectives import adversarial, gan, get_objective, wgan, wgan_gp, wgan_sn

TINY = dict(hidden=(16, 16), latent_dim=3)


@pytest.fixture
def rng():
    return np.random.default_rng()


def _matrix_with_gap(rng, rows, cols):
    """A (rows, cols) matrix whose largest singular value is in [0.5, 3] and at least 1.25x the second, so
    that power iteration converges fast on every draw."""
    u, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
    v, _ = np.linalg.qr(rng.normal(size=(cols, cols)))
    r = min(rows, cols)
    top = rng.uniform(0.5, 3.0)
    s = np.concatenate([[top], top * rng.uniform(0.05, 0.8, size=r - 1)])
    return (u[:, :r] * s) @ v[:, :r].T


def _with_gapped_kernels(rng, params):
    """Every kernel replaced by a matrix with a spectral gap, reshaped to the kernel's shape."""

    def replace(path, leaf):
        if path[-1].key != "kernel":
            return leaf
        shape = leaf.shape
        return jnp.asarray(_matrix_with_gap(rng, int(np.prod(shape[:-1])), shape[-1]).reshape(shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(replace, params)


def _converge(module, variables, x, iterations=100):
    """``iterations`` training-mode calls with fixed parameters: the power iteration's vectors converge."""

    def body(_, stats):
        _, mutated = module.apply(
            {"params": variables["params"], "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
        )
        return mutated["batch_stats"]

    stats = jax.jit(lambda s: jax.lax.fori_loop(0, iterations, body, s))(variables["batch_stats"])
    return {"params": variables["params"], "batch_stats": stats}


def _kernels(params, prefix=()):
    """{'layer/.../kernel': kernel} of a params tree."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_kernels(value, (*prefix, key)))
        elif key == "kernel":
            out["/".join((*prefix, key))] = np.asarray(value, np.float64)
    return out


def _sigmas(stats):
    return {
        name[: -len("/sigma")]: float(v)
        for group in stats.values()
        for name, v in group.items()
        if name.endswith("/sigma")
    }


def _top_singular_value(kernel):
    return np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]


NETWORKS = {
    "mlp-leaky-relu": (
        lambda: models.MLPDiscriminator(hidden=(12, 9), activation="leaky_relu", spectral_norm=True),
        (5,),
    ),
    "mlp-maxout": (
        lambda: models.MLPDiscriminator(hidden=(7,), activation="maxout", maxout_pieces=3, spectral_norm=True),
        (4,),
    ),
    "dcgan": (lambda: models.conv_critic(base_features=3, extra_layers=1, spectral_norm=True), (28, 28, 1)),
}


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_power_iteration_estimate_converges_to_the_largest_singular_value(rng, network):
    make, shape = NETWORKS[network]
    module = make()
    x = jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32)
    variables = module.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), x, train=False)
    variables = {"params": _with_gapped_kernels(rng, variables["params"]), "batch_stats": variables["batch_stats"]}
    sigmas = _sigmas(_converge(module, variables, x)["batch_stats"])
    kernels = _kernels(variables["params"])
    assert set(sigmas) == set(kernels)  # every kernel is normalised, nothing else
    for name, kernel in kernels.items():
        assert sigmas[name] == pytest.approx(_top_singular_value(kernel), rel=1e-5), name


def _leaky_relu(h):
    return np.where(h > 0, h, 0.2 * h)


def _numpy_mlp_critic(params, x, activation, pieces=None):
    """Float64 forward pass of the MLP critic with every kernel divided by its exact largest singular value."""

    def dense(p, h):
        w = np.asarray(p["kernel"], np.float64)
        return h @ (w / _top_singular_value(w)) + np.asarray(p["bias"], np.float64)

    h = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    i = 0
    while f"dense{i}" in params or f"maxout{i}" in params:
        if activation == "maxout":
            pre = dense(params[f"maxout{i}"]["dense"], h)
            h = pre.reshape(h.shape[0], -1, pieces).max(-1)
        else:
            h = _leaky_relu(dense(params[f"dense{i}"], h))
        i += 1
    return dense(params["logit"], h)[:, 0]


@pytest.mark.parametrize("network", ["mlp-leaky-relu", "mlp-maxout"])
def test_normalised_critic_matches_float64_reference_and_is_1_lipschitz(rng, network):
    make, shape = NETWORKS[network]
    module = make()
    x = jnp.asarray(rng.normal(size=(64, *shape)), jnp.float32)
    variables = module.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), x, train=False)
    variables = _converge(
        module, {"params": _with_gapped_kernels(rng, variables["params"]), "batch_stats": variables["batch_stats"]}, x
    )
    critic = jax.jit(lambda v, x: module.apply(v, x, train=False))
    pieces = module.maxout_pieces if module.activation == "maxout" else None
    want = _numpy_mlp_critic(variables["params"], np.asarray(x), module.activation, pieces)
    np.testing.assert_allclose(critic(variables, x), want, rtol=1e-4, atol=1e-5)
    # Each normalised kernel has spectral norm 1 and the activations are 1-Lipschitz: |grad_x f| <= 1.
    norms = wgan_gp.per_sample_gradient_norms(lambda x: critic(variables, x), x)
    assert float(jnp.max(norms)) <= 1.0 + 1e-4
    assert float(jnp.max(norms)) > 0.05  # not vacuous: the bound is approached, not met by a dead network


def test_parameter_gradient_through_the_normalisation_matches_finite_differences(rng):
    """d/dW of f with W / sigma(W): the step differentiates sigma = v^T W u at the converged vectors, the exact
    derivative of the largest singular value; checked against central differences of the float64 reference."""
    module = models.MLPDiscriminator(hidden=(5, 4), activation="leaky_relu", spectral_norm=True)
    x = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    variables = module.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), x, train=False)
    variables = _converge(
        module, {"params": _with_gapped_kernels(rng, variables["params"]), "batch_stats": variables["batch_stats"]}, x
    )
    weights = jnp.asarray(rng.normal(size=6), jnp.float32)
    objective = lambda p: jnp.sum(
        weights * module.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=False)
    )
    grads = jax.jit(jax.grad(objective))(variables["params"])

    params64 = jax.tree_util.tree_map(lambda a: np.array(a, np.float64), variables["params"])
    reference = lambda p: float(
        np.sum(np.asarray(weights, np.float64) * _numpy_mlp_critic(p, np.asarray(x), "leaky_relu"))
    )
    h = 1e-6
    for layer in ("dense0", "dense1", "logit"):
        for name in ("kernel", "bias"):
            leaf = params64[layer][name]
            fd = np.zeros_like(leaf)
            for idx in np.ndindex(leaf.shape):
                saved = leaf[idx]
                leaf[idx] = saved + h
                up = reference(params64)
                leaf[idx] = saved - h
                down = reference(params64)
                leaf[idx] = saved
                fd[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(grads[layer][name], fd, rtol=2e-3, atol=2e-5, err_msg=f"{layer}/{name}")


def _power_step(kernel, u):
    """One power iteration as documented: kernel (..., out) read as W (p, out), u (1, out) ->
    (W / sigma, new u); the vectors carry no gradient."""
    w = kernel.reshape(-1, kernel.shape[-1])
    normalise = lambda a: a * jax.lax.rsqrt(jnp.sum(a * a) + 1e-12)
    v = jax.lax.stop_gradient(normalise(u @ w.T))
    u_new = jax.lax.stop_gradient(normalise(v @ w))
    sigma = (v @ w @ u_new.T)[0, 0]
    return (w / sigma).reshape(kernel.shape), u_new


def _normalised(params, stats):
    """Params with each kernel normalised by one power iteration from ``stats``; returns (params, new stats)."""
    params, new_stats = dict(params), {}
    for group, entries in stats.items():
        layer = next(iter(entries)).split("/")[0]
        normalised, u_new = _power_step(params[layer]["kernel"], entries[f"{layer}/kernel/u"])
        params[layer] = {**params[layer], "kernel": normalised}
        new_stats[group] = {**entries, f"{layer}/kernel/u": u_new}
    return params, new_stats


# A WGAN critic's loss is linear in its output, so the gradient of a hidden bias whose unit is active on every
# sample of both minibatches is 0 up to rounding, and Adam's first steps turn that rounding into updates of up
# to the learning rate with either sign. The GAN's cross-entropy has no such exact zeros: everything is compared
# tightly. For WGAN-SN (one critic update per step) the critic loss and the vectors, computed before the
# update, are compared tightly; what follows the update (parameters, generator loss) to within 3 learning rates.
@pytest.mark.parametrize(
    "name,config,d_loss_fn,g_loss_fn,after_update_atol",
    [
        (
            "gan",
            gan.GANConfig(spectral_norm=True, d_steps=2, d_activation="leaky_relu", **TINY),
            gan.discriminator_loss,
            gan.non_saturating_generator_loss,
            1e-6,
        ),
        ("wgan-sn", wgan_sn.WGANSNConfig(n_critic=1, **TINY), wgan.critic_loss, wgan.generator_loss, 3e-4),
    ],
)
def test_spectral_norm_step_matches_the_algorithm_written_out(
    rng, name, config, d_loss_fn, g_loss_fn, after_update_atol
):
    """Discriminator updates with every kernel divided by a one-step power-iteration estimate (the real pass
    iterates from the stored vectors, the fake pass from the real pass's, and both are kept), then a generator
    update through the discriminator after one more iteration, which is not kept."""
    obj = get_objective(name)
    m, k = 8, config.inner_steps
    state = obj.init(
        jax.random.PRNGKey(int(rng.integers(1 << 30))),
        config,
        {"x": jnp.asarray(rng.normal(size=(k, m, 2)), jnp.float32)},
    )
    plain = models.MLPDiscriminator(hidden=config.hidden, activation=config.d_activation)
    gen, _ = adversarial.build_networks(config, state.data_shape, batch_norm_in_d=False)
    g_tx = optax.adam(config.g_learning_rate, b1=config.beta1, b2=config.beta2)
    d_tx = optax.adam(config.d_learning_rate, b1=config.beta1, b2=config.beta2)
    step = jax.jit(obj.step)
    ref = state
    for _ in range(4):
        batch = {"x": jnp.asarray(rng.normal(size=(k, m, 2)), jnp.float32)}
        state, metrics = step(state, batch)

        key, d_key, g_key = jax.random.split(ref.key, 3)
        g_params = ref.generator.params
        d_params, stats, d_opt = ref.discriminator.params, ref.discriminator.batch_stats, ref.discriminator.opt_state
        d_losses = []
        for real, step_key in zip(batch["x"], jax.random.split(d_key, k)):
            z_key, _ = jax.random.split(step_key)
            fake = gen.apply({"params": g_params}, jax.random.normal(z_key, (m, 3)), train=True)

            def loss(p, stats=stats, real=real, fake=fake):
                p_real, s1 = _normalised(p, stats)
                p_fake, s2 = _normalised(p, s1)
                return d_loss_fn(plain.apply({"params": p_real}, real), plain.apply({"params": p_fake}, fake))[0], s2

            (value, stats), grads = jax.value_and_grad(loss, has_aux=True)(d_params)
            d_losses.append(value)
            updates, d_opt = d_tx.update(grads, d_opt, d_params)
            d_params = optax.apply_updates(d_params, updates)
        z = jax.random.normal(g_key, (m, 3))
        p_g, _ = _normalised(d_params, stats)
        g_loss, g_grads = jax.value_and_grad(
            lambda p: g_loss_fn(plain.apply({"params": p_g}, gen.apply({"params": p}, z, train=True)))
        )(g_params)
        g_updates, g_opt = g_tx.update(g_grads, ref.generator.opt_state, g_params)
        ref = ref.replace(
            step=ref.step + 1,
            key=key,
            generator=ref.generator.replace(params=optax.apply_updates(g_params, g_updates), opt_state=g_opt),
            discriminator=ref.discriminator.replace(params=d_params, opt_state=d_opt, batch_stats=stats),
        )
        np.testing.assert_allclose(metrics["d_loss"], np.mean(d_losses), rtol=1e-4, atol=1e-6)
        us = lambda s: {g: {n: v for n, v in e.items() if n.endswith("/u")} for g, e in s.items()}
        chex.assert_trees_all_close(
            us(state.discriminator.batch_stats), us(ref.discriminator.batch_stats), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(metrics["g_loss"], g_loss, rtol=1e-4, atol=after_update_atol)
        chex.assert_trees_all_close(
            state.discriminator.params, ref.discriminator.params, rtol=2e-4, atol=after_update_atol
        )
        chex.assert_trees_all_close(state.generator.params, ref.generator.params, rtol=2e-4, atol=after_update_atol)
        # Sync: the next step starts from the library's state, so a difference does not compound.
        ref = ref.replace(generator=state.generator, discriminator=state.discriminator)


def test_gan_with_spectral_norm_has_no_batch_norm_in_d(rng):
    """SN-GAN's discriminator (Miyato et al.): the DCGAN D's BatchNorm is replaced by the normalised weights,
    so its ``batch_stats`` hold the power-iteration vectors only, and they move at every step."""
    batch = {"x": jnp.asarray(rng.uniform(-1, 1, size=(1, 8, 28, 28, 1)), jnp.float32)}
    plain = gan.init(jax.random.PRNGKey(0), gan.GANConfig(model="dcgan", base_features=4, latent_dim=8), batch)
    assert any(group.startswith("bn") for group in plain.discriminator.batch_stats)
    config = gan.GANConfig(model="dcgan", base_features=4, latent_dim=8, spectral_norm=True)
    state = gan.init(jax.random.PRNGKey(0), config, batch)
    stats = state.discriminator.batch_stats
    assert sorted(stats) == ["sn_conv0", "sn_conv1", "sn_logit"]
    new, metrics = jax.jit(gan.step)(state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), new.discriminator.batch_stats, stats)
    assert all(jax.tree_util.tree_leaves(moved))
    # In inference the stored vectors are used as they are: the same input gives the same logits twice.
    x = batch["x"][0]
    np.testing.assert_array_equal(gan.discriminate(new, x), gan.discriminate(new, x))


def test_wgan_sn_config_requires_spectral_norm(rng):
    with pytest.raises(ValueError, match="spectral_norm must be True"):
        wgan_sn.init(
            jax.random.PRNGKey(0),
            wgan_sn.WGANSNConfig(spectral_norm=False, **TINY),
            {"x": jnp.zeros((5, 8, 2), jnp.float32)},
        )
    assert get_objective("wgan-sn").config_cls is wgan_sn.WGANSNConfig
