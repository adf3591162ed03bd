"""GAN / WGAN / WGAN-GP losses against float64 numpy references on fresh random inputs."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import gan, wgan, wgan_gp


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def test_discriminator_loss_matches_eq5(rng):
    lr, lf = rng.normal(size=32) * 3, rng.normal(size=32) * 3
    loss, metrics = jax.jit(gan.discriminator_loss)(jnp.asarray(lr), jnp.asarray(lf))
    expected = -(np.mean(np.log(_sigmoid(lr))) + np.mean(np.log(1.0 - _sigmoid(lf))))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["d_real"], _sigmoid(lr).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["d_fake"], _sigmoid(lf).mean(), rtol=1e-5)


def test_discriminator_loss_at_the_optimum_is_2log2():
    # D = 1/2 everywhere (P_r = P_g): L(D*, G*) = -2 log 2, i.e. our loss (its negation) is 2 log 2.
    loss, _ = gan.discriminator_loss(jnp.zeros(8), jnp.zeros(8))
    np.testing.assert_allclose(loss, 2 * np.log(2), rtol=1e-6)


def test_generator_losses_match_eq5_and_eq7(rng):
    lf = rng.normal(size=64) * 4
    np.testing.assert_allclose(
        jax.jit(gan.saturating_generator_loss)(jnp.asarray(lf)), np.mean(np.log(1 - _sigmoid(lf))), rtol=1e-5
    )
    np.testing.assert_allclose(
        jax.jit(gan.non_saturating_generator_loss)(jnp.asarray(lf)), -np.mean(np.log(_sigmoid(lf))), rtol=1e-5
    )


def test_losses_stay_finite_when_the_discriminator_saturates():
    big = jnp.array([80.0, -80.0])
    for value in (
        gan.discriminator_loss(big, -big)[0],
        gan.saturating_generator_loss(big),
        gan.non_saturating_generator_loss(big),
    ):
        assert np.isfinite(value)
    # log(1 - sigmoid(80)) = -80 - log(1 + e^-80): exact in log-sigmoid form, -inf in the naive form.
    np.testing.assert_allclose(gan.saturating_generator_loss(jnp.array([80.0])), -80.0, rtol=1e-6)


def test_saturating_vs_non_saturating_gradients_at_a_confident_discriminator(rng):
    """d/dl of eq. (5)'s G term is -sigmoid(l)/m, of eq. (7) -(1 - sigmoid(l))/m: when D rejects the
    samples (l << 0) the first vanishes and the second does not (the lecture's theorem)."""
    lf = jnp.asarray(rng.uniform(-12, -6, size=16))
    g_sat = jax.jit(jax.grad(gan.saturating_generator_loss))(lf)
    g_ns = jax.jit(jax.grad(gan.non_saturating_generator_loss))(lf)
    s = _sigmoid(np.asarray(lf, np.float64))
    np.testing.assert_allclose(g_sat, -s / 16, rtol=1e-4)
    np.testing.assert_allclose(g_ns, -(1 - s) / 16, rtol=1e-4)
    assert np.max(np.abs(g_sat)) < 1e-2 * np.min(np.abs(g_ns))


def test_critic_loss_and_generator_loss(rng):
    fr, ff = rng.normal(size=20), rng.normal(size=20) + 1.0
    loss, metrics = jax.jit(wgan.critic_loss)(jnp.asarray(fr), jnp.asarray(ff))
    np.testing.assert_allclose(loss, ff.mean() - fr.mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["w1_estimate"], fr.mean() - ff.mean(), rtol=1e-5)
    np.testing.assert_allclose(jax.jit(wgan.generator_loss)(jnp.asarray(ff)), -ff.mean(), rtol=1e-5)


def test_clip_params(rng):
    params = {"a": jnp.asarray(rng.normal(size=(3, 4))), "b": {"c": jnp.asarray(rng.uniform(-0.009, 0.009, size=5))}}
    clipped = jax.jit(wgan.clip_params, static_argnums=1)(params, 0.01)
    np.testing.assert_array_equal(clipped["a"], np.clip(np.asarray(params["a"]), -0.01, 0.01))
    np.testing.assert_array_equal(clipped["b"]["c"], params["b"]["c"])


# --- gradient penalty against finite differences --------------------------------------------------


def _np_critic(params, x):
    """Float64 numpy critic: tanh MLP with one hidden layer on the flattened input; x (n, ...) -> (n,)."""
    w1, b1, w2 = params
    h = np.tanh(x.reshape(x.shape[0], -1) @ w1 + b1)
    return h @ w2


def _jax_critic(params):
    w1, b1, w2 = (jnp.asarray(p, jnp.float32) for p in params)
    return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1 + b1) @ w2


def _fd_grad_norms(params, x, h=1e-6):
    """Central finite-difference gradient norm of the critic at each sample, over all its coordinates."""
    norms = []
    for xi in x:
        flat = xi.ravel()
        grad = np.empty_like(flat)
        for j in range(flat.size):
            e = np.zeros_like(flat)
            e[j] = h
            grad[j] = (
                _np_critic(params, (flat + e).reshape(1, *xi.shape))[0]
                - _np_critic(params, (flat - e).reshape(1, *xi.shape))[0]
            ) / (2 * h)
        norms.append(np.linalg.norm(grad))
    return np.array(norms)


@pytest.mark.parametrize("sample_shape", [(2,), (4, 3, 2)])
def test_gradient_penalty_against_finite_differences(rng, sample_shape):
    d = int(np.prod(sample_shape))
    params = (rng.normal(size=(d, 8)), rng.normal(size=8), rng.normal(size=8))
    m = 6
    real = rng.normal(size=(m, *sample_shape))
    fake = rng.normal(size=(m, *sample_shape))
    eps = rng.uniform(size=m)
    penalty, metrics = jax.jit(lambda r, f, e: wgan_gp.gradient_penalty(_jax_critic(params), r, f, e))(
        jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32), jnp.asarray(eps, jnp.float32)
    )
    e = eps.reshape((-1,) + (1,) * len(sample_shape))
    interp = e * real + (1 - e) * fake
    norms = _fd_grad_norms(params, interp)
    np.testing.assert_allclose(penalty, np.mean((norms - 1) ** 2), rtol=1e-4)
    np.testing.assert_allclose(metrics["grad_norm_interp"], norms.mean(), rtol=1e-4)


def test_per_sample_norm_is_over_all_non_batch_axes_and_ignores_other_samples(rng):
    """The norm of each sample's gradient is over every non-batch axis (the known bug takes it over
    one axis only, which would give an array of shape (3, 3, 2) or different values)."""
    params = (rng.normal(size=(12, 5)), rng.normal(size=5), rng.normal(size=5))
    x = rng.normal(size=(3, 2, 3, 2))
    norms = jax.jit(lambda v: wgan_gp.per_sample_gradient_norms(_jax_critic(params), v))(jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(norms, _fd_grad_norms(params, x), rtol=1e-4)


def test_hinge_losses_match_numpy_and_their_gradients_count_the_margin_violations(rng):
    sr, sf = rng.normal(size=40) * 2, rng.normal(size=40) * 2
    loss, metrics = jax.jit(gan.hinge_discriminator_loss)(jnp.asarray(sr), jnp.asarray(sf))
    np.testing.assert_allclose(loss, np.mean(np.maximum(0, 1 - sr)) + np.mean(np.maximum(0, 1 + sf)), rtol=1e-5)
    np.testing.assert_allclose(metrics["d_real"], sr.mean(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["d_fake"], sf.mean(), rtol=1e-5, atol=1e-7)
    # Only the samples inside the margin move D: d/ds_real = -1/m where s_real < 1, d/ds_fake = 1/m where s_fake > -1.
    g_real, g_fake = jax.grad(lambda a, b: gan.hinge_discriminator_loss(a, b)[0], argnums=(0, 1))(
        jnp.asarray(sr, jnp.float32), jnp.asarray(sf, jnp.float32)
    )
    np.testing.assert_allclose(g_real, -(sr < 1).astype(float) / 40, atol=1e-7)
    np.testing.assert_allclose(g_fake, (sf > -1).astype(float) / 40, atol=1e-7)
    np.testing.assert_allclose(jax.jit(gan.hinge_generator_loss)(jnp.asarray(sf)), -sf.mean(), rtol=1e-5, atol=1e-7)
    weights = rng.uniform(0, 2, size=40)
    np.testing.assert_allclose(
        gan.hinge_generator_loss(jnp.asarray(sf), jnp.asarray(weights)), -np.mean(weights * sf), rtol=1e-5, atol=1e-7
    )


def test_bad_gan_loss_names_are_refused():
    with pytest.raises(ValueError, match="discriminator_loss must be one of"):
        gan.GANConfig(discriminator_loss="wasserstein").validate()
    with pytest.raises(ValueError, match="generator_loss must be one of"):
        gan.GANConfig(generator_loss="hinge-ish").validate()
