"""precision="bfloat16": float32 parameters and optimiser states, bfloat16 convolutions and matrix products in the
compiled step, finite losses, and a step close to the float32 one."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import gan, wgan_gp

TINY = dict(hidden=(32, 32), latent_dim=3)
DCGAN = dict(model="dcgan", base_features=4, latent_dim=8)


def _batch(k, m, shape, seed=0):
    return {"x": jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=(k, m, *shape)), jnp.float32)}


def _float_dtypes(tree):
    return {str(a.dtype) for a in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(a.dtype, jnp.floating)}


@pytest.mark.parametrize(
    "obj,config,shape",
    [
        (gan, gan.GANConfig(precision="bfloat16", **TINY), (2,)),
        (gan, gan.GANConfig(precision="bfloat16", ema_decay=0.9, **DCGAN), (28, 28, 1)),
        (wgan_gp, wgan_gp.WGANGPConfig(precision="bfloat16", n_critic=2, r1_weight=1.0, **DCGAN), (32, 32, 3)),
    ],
)
def test_bfloat16_step_keeps_float32_state_and_computes_in_bfloat16(obj, config, shape):
    batch = _batch(config.inner_steps, 4, shape)
    state = obj.init(jax.random.PRNGKey(0), config, batch)
    hlo = jax.jit(obj.step).lower(state, batch).as_text()
    dots = [line for line in hlo.splitlines() if "stablehlo.dot_general" in line or "stablehlo.convolution" in line]
    assert dots and any("bf16" in line for line in dots)
    new, metrics = jax.jit(obj.step)(state, batch)
    for part in (new.generator, new.discriminator):
        assert _float_dtypes(part.params) == {"float32"}
        assert _float_dtypes(part.opt_state) <= {"float32"}
        assert _float_dtypes(part.batch_stats) <= {"float32"}
    assert _float_dtypes(new.generator_ema) <= {"float32"}
    for name, value in metrics.items():
        assert value.dtype == jnp.float32 and np.isfinite(float(value)), name


def test_float32_step_has_no_bfloat16():
    config = gan.GANConfig(**TINY)
    batch = _batch(1, 8, (2,))
    state = gan.init(jax.random.PRNGKey(0), config, batch)
    assert "bf16" not in jax.jit(gan.step).lower(state, batch).as_text()


def test_bfloat16_step_is_close_to_the_float32_step():
    config = gan.GANConfig(**TINY)
    batch = _batch(1, 64, (2,), seed=1)
    state = gan.init(jax.random.PRNGKey(1), config, batch)
    step = jax.jit(gan.step)
    f32, m32 = step(state, batch)
    bf16, m16 = step(state.replace(config=dataclasses.replace(config, precision="bfloat16")), batch)
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        np.testing.assert_allclose(m16[name], m32[name], rtol=3e-2, err_msg=name)
    # gradients run back through both networks in bfloat16 (8 bits of mantissa): a few % on their norms
    for name in ("d_grad_norm", "g_grad_norm"):
        np.testing.assert_allclose(m16[name], m32[name], rtol=0.1, err_msg=name)
    moved16 = np.concatenate(
        [np.ravel(a - b) for a, b in zip(*(jax.tree_util.tree_leaves(s.generator.params) for s in (bf16, state)))]
    )
    moved32 = np.concatenate(
        [np.ravel(a - b) for a, b in zip(*(jax.tree_util.tree_leaves(s.generator.params) for s in (f32, state)))]
    )
    assert np.mean(np.sign(moved16) == np.sign(moved32)) > 0.9  # the generator moves the same way
    # Adam's first update is about lr * sign(gradient) per weight: the weights agree to well within one update
    lr = config.d_learning_rate
    for a, b in zip(
        jax.tree_util.tree_leaves(bf16.discriminator.params), jax.tree_util.tree_leaves(f32.discriminator.params)
    ):
        diff = np.abs(np.asarray(a) - np.asarray(b))
        assert diff.max() <= 2.01 * lr and diff.mean() < 0.1 * lr


def test_bad_precision_raises_one_line():
    with pytest.raises(ValueError, match=r"precision \(--precision\) must be one of float32, bfloat16, got 'fp16'"):
        gan.GANConfig(precision="fp16").validate()
