"""The generator's exponential moving average (``config.ema_decay``): float64 references for the averaged
weights and its BatchNorm statistics, sampling from it, and that it leaves training untouched."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import adversarial, gan, wgan_gp

TINY = dict(hidden=(16, 16), latent_dim=3, g_batch_norm=True)
M = 8


def _batches(seed, n, k=1):
    rng = np.random.default_rng(seed)
    return [{"x": jnp.asarray(rng.normal(size=(k, M, 2)), jnp.float32)} for _ in range(n)]


def _run(config, batches, init=gan.init, step=gan.step):
    state = init(jax.random.PRNGKey(4), config, batches[0])
    step = jax.jit(step)
    states = [state]
    for batch in batches:
        state, _ = step(state, batch)
        states.append(state)
    return states


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


def test_averaged_weights_and_statistics_match_a_float64_reference():
    decay, n = 0.6, 20  # the warm-up (1 + t) / (10 + t) is below 0.6 until t = 12.5: both regimes are run
    batches = _batches(0, n)
    states = _run(gan.GANConfig(ema_decay=decay, **TINY), batches)
    ema = _f64(states[0].generator.params)
    mean, var = np.zeros(16), np.ones(16)  # bn0's running statistics start at BatchNorm's defaults
    for t in range(1, n + 1):
        r = min(decay, (1 + t) / (10 + t))
        ema = jax.tree_util.tree_map(lambda e, p: r * e + (1 - r) * p, ema, _f64(states[t].generator.params))
        # bn0 of the averaged generator sees dense0(z) on the step's generator latents.
        _, _, g_key = jax.random.split(states[t - 1].key, 3)
        z = np.asarray(jax.random.normal(g_key, (M, 3)), np.float64)
        h = z @ ema["dense0"]["kernel"]
        mean = 0.9 * mean + 0.1 * h.mean(0)
        var = 0.9 * var + 0.1 * h.var(0)
        got = states[t].generator_ema
        for a, b in zip(jax.tree_util.tree_leaves(got["params"]), jax.tree_util.tree_leaves(ema)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(got["batch_stats"]["bn0"]["mean"], mean, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["batch_stats"]["bn0"]["var"], var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("objective", ["gan", "wgan-gp"])
def test_averaging_leaves_training_unchanged(objective):
    if objective == "gan":
        make, init, step, k = gan.GANConfig, gan.init, gan.step, 1
    else:
        make, init, step, k = wgan_gp.WGANGPConfig, wgan_gp.init, wgan_gp.step, 2
    extra = {"n_critic": k} if objective == "wgan-gp" else {}
    batches = _batches(1, 6, k)
    plain = _run(make(**TINY, **extra), batches, init, step)[-1]
    averaged = _run(make(ema_decay=0.9, **TINY, **extra), batches, init, step)[-1]
    assert plain.generator_ema == {}
    for field in ("generator", "discriminator", "key", "step", "hparams"):
        chex.assert_trees_all_equal(getattr(plain, field), getattr(averaged, field))


def test_sample_uses_the_average_unless_asked_not_to():
    state = _run(gan.GANConfig(ema_decay=0.9, **TINY), _batches(2, 5))[-1]
    key = jax.random.PRNGKey(9)
    z = jax.random.normal(key, (32, 3))
    gen, _ = adversarial.build_networks(state.config, (2,), batch_norm_in_d=True)
    ema_vars = {"params": state.generator_ema["params"], "batch_stats": state.generator_ema["batch_stats"]}
    raw_vars = {"params": state.generator.params, "batch_stats": state.generator.batch_stats}
    sample = jax.jit(gan.sample, static_argnums=2, static_argnames="ema")
    np.testing.assert_allclose(sample(state, key, 32), gen.apply(ema_vars, z, train=False), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        sample(state, key, 32, ema=False), gen.apply(raw_vars, z, train=False), rtol=1e-6, atol=1e-6
    )
    assert not np.allclose(sample(state, key, 32), sample(state, key, 32, ema=False))


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_bad_ema_decay_raises(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(ema_decay=decay, **TINY), _batches(0, 1)[0])
