"""Latent recovery against closed forms: a linear generator's least-squares residual (numpy lstsq) and exact
recovery of targets inside the range of a small nonlinear generator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.learned_metrics import latent_reconstruction


def test_linear_generator_reaches_the_least_squares_residual():
    rng = np.random.default_rng()
    d, k, n = 12, 4, 9
    a, b = rng.normal(size=(d, k)), rng.normal(size=d)
    targets = rng.normal(size=(n, d)) * 2.0

    def generate(z):
        return z @ jnp.asarray(a.T, jnp.float32) + jnp.asarray(b, jnp.float32)

    out = latent_reconstruction(
        generate,
        targets,
        key=jax.random.PRNGKey(int(rng.integers(1 << 30))),
        latent_dim=k,
        n_steps=3000,
        learning_rate=0.1,
        n_restarts=2,
    )
    z_star, *_ = np.linalg.lstsq(a, (targets - b).T, rcond=None)
    residual = np.sum((a @ z_star - (targets - b).T) ** 2, axis=0)
    np.testing.assert_allclose(out["errors"], residual, rtol=1e-3)
    np.testing.assert_allclose(out["latents"], z_star.T, atol=2e-3)
    # The returned latent is the best restart's, and its error is what the generator gives there.
    np.testing.assert_allclose(out["errors"], out["restart_errors"].min(0))
    recon = np.asarray(generate(jnp.asarray(out["latents"])))
    np.testing.assert_allclose(out["errors"], np.sum((recon - targets) ** 2, axis=1), rtol=1e-4)
    np.testing.assert_allclose(out["latent_norms"], np.linalg.norm(out["latents"], axis=1), rtol=1e-6)
    assert out["mean_error"] == pytest.approx(out["errors"].mean())


def test_targets_in_the_range_of_a_nonlinear_generator_are_recovered():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(3, 16)) / np.sqrt(3), rng.normal(size=(16, 2, 5)) / 4.0

    def generate(z):  # (m, 3) -> (m, 2, 5) images in (-1, 1)
        h = jnp.tanh(z @ jnp.asarray(w1, jnp.float32))
        return jnp.tanh(jnp.einsum("mh,hij->mij", h, jnp.asarray(w2, jnp.float32)))

    z_true = rng.normal(size=(6, 3)).astype(np.float32)
    targets = np.asarray(generate(jnp.asarray(z_true)))
    # A latent of norm 3.2 saturates the tanh layers: its basin is flat, so it takes 3,000 steps at 0.1.
    out = latent_reconstruction(
        generate, targets, key=jax.random.PRNGKey(0), latent_dim=3, n_steps=3000, learning_rate=0.1, n_restarts=8
    )
    assert np.all(out["errors"] < 1e-6 * np.sum(targets**2, axis=(1, 2)))
    off_range = latent_reconstruction(
        generate, targets + 0.3, key=jax.random.PRNGKey(0), latent_dim=3, n_steps=3000, learning_rate=0.1, n_restarts=8
    )
    assert np.all(off_range["errors"] > 1e-3)


def test_latent_reconstruction_bad_input():
    def generate(z):
        return jnp.tile(z, (1, 2))

    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"generate maps latents to shape \(4,\) but targets have shape \(3,\)"):
        latent_reconstruction(generate, np.zeros((5, 3)), key=key, latent_dim=2)
    with pytest.raises(ValueError, match="NaN"):
        latent_reconstruction(generate, np.full((5, 4), np.nan), key=key, latent_dim=2)
    with pytest.raises(ValueError, match="learning_rate must be a positive finite float"):
        latent_reconstruction(generate, np.zeros((5, 4)), key=key, latent_dim=2, learning_rate=0.0)
    with pytest.raises(ValueError, match="n_restarts must be >= 1"):
        latent_reconstruction(generate, np.zeros((5, 4)), key=key, latent_dim=2, n_restarts=0)
    with pytest.raises(ValueError, match=r"targets must have shape \(n, \*target_shape\)"):
        latent_reconstruction(generate, np.zeros(4), key=key, latent_dim=2)
