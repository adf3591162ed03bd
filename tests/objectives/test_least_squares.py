"""The least-squares GAN losses (Mao et al. 2017, a = 0, b = c = 1) against float64 numpy, with their gradients, and
in a train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import gan


def test_least_squares_losses_and_gradients_match_the_equations():
    rng = np.random.default_rng(29)
    sr, sf = rng.normal(size=32) * 2, rng.normal(size=32) * 2
    loss, metrics = jax.jit(gan.least_squares_discriminator_loss)(jnp.float32(sr), jnp.float32(sf))
    np.testing.assert_allclose(loss, 0.5 * np.mean((sr - 1) ** 2) + 0.5 * np.mean(sf**2), rtol=1e-5)
    np.testing.assert_allclose(metrics["d_real"], sr.mean(), rtol=1e-5, atol=1e-6)
    g_real, g_fake = jax.jit(jax.grad(lambda a, b: gan.least_squares_discriminator_loss(a, b)[0], (0, 1)))(
        jnp.float32(sr), jnp.float32(sf)
    )
    np.testing.assert_allclose(g_real, (sr - 1) / 32, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_fake, sf / 32, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        jax.jit(gan.least_squares_generator_loss)(jnp.float32(sf)), 0.5 * np.mean((sf - 1) ** 2), rtol=1e-5
    )
    w = rng.uniform(0, 2, size=32)
    np.testing.assert_allclose(
        gan.least_squares_generator_loss(jnp.float32(sf), jnp.float32(w)), 0.5 * np.mean(w * (sf - 1) ** 2), rtol=1e-5
    )


def test_the_optimal_discriminator_is_the_papers():
    """For fixed densities, D* = (b p_d + a p_g) / (p_d + p_g) (Mao et al., eq. 4): minimise the D loss on a grid."""
    p_d, p_g = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    loss = lambda d: jnp.sum(jnp.asarray(p_d) * 0.5 * (d - 1) ** 2 + jnp.asarray(p_g) * 0.5 * d**2)
    d = jnp.zeros(3)
    for _ in range(500):
        d = d - 0.5 * jax.grad(loss)(d)
    np.testing.assert_allclose(d, p_d / (p_d + p_g), rtol=1e-5)


def test_least_squares_gan_trains_and_bad_names_raise():
    config = gan.GANConfig(
        discriminator_loss="least-squares", generator_loss="least-squares", hidden=(16,), latent_dim=2
    )
    batch = {"x": jnp.asarray(np.random.default_rng(0).normal(size=(1, 16, 2)), jnp.float32)}
    state = gan.init(jax.random.PRNGKey(0), config, batch)
    _, metrics = jax.jit(gan.step)(state, batch)
    assert np.isfinite(float(metrics["d_loss"])) and np.isfinite(float(metrics["g_loss"]))
    assert not gan.density_ratio_of(config)
    with pytest.raises(ValueError, match=r"discriminator_loss must be one of .*least-squares \(--discriminator-loss\)"):
        gan.GANConfig(discriminator_loss="l2").validate()
