"""DiffAugment: each policy against a float64 numpy implementation of the authors' reference code driven by the same
draws, the draws' ranges, gradients against finite differences, and the option in the train step."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import augment, gan, wgan_gp


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _np_translation(x, shifts):
    """The reference's rand_translation with given shifts: pad 1 pixel of zeros, read pixel (i + t + 1) of the padded
    image clamped to [0, size + 1] (so anything outside reads the zero border)."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.empty_like(x)
    for b in range(n):
        rows = np.clip(np.arange(h) + shifts[b, 0] + 1, 0, h + 1)
        cols = np.clip(np.arange(w) + shifts[b, 1] + 1, 0, w + 1)
        out[b] = padded[b][rows][:, cols]
    return out


def _np_cutout(x, centres):
    """The reference's rand_cutout with given centres: the square's indices clamped into the image, mask set to 0."""
    n, h, w, _ = x.shape
    ch, cw = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    mask = np.ones((n, h, w))
    for b in range(n):
        rows = np.clip(np.arange(ch) + centres[b, 0] - ch // 2, 0, h - 1)
        cols = np.clip(np.arange(cw) + centres[b, 1] - cw // 2, 0, w - 1)
        mask[b][np.ix_(rows, cols)] = 0
    return x * mask[..., None]


def _np_color(x, draws):
    b, s, c = (draws[:, i].reshape(-1, 1, 1, 1) for i in range(3))
    x = x + (b - 0.5)
    mean = x.mean(axis=3, keepdims=True)
    x = (x - mean) * (s * 2) + mean
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * (c + 0.5) + mean


NP = {"translation": _np_translation, "cutout": _np_cutout, "color": _np_color}
SHAPES = [(6, 32, 32, 3), (5, 28, 28, 1), (4, 9, 12, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("policy", ["translation", "cutout", "color", "translation,cutout,color", "color,translation"])
def test_policies_match_numpy_with_the_same_draws(rng, shape, policy):
    x = rng.uniform(-1, 1, size=shape).astype(np.float32)
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    draws = augment.draw(key, shape[0], shape[1:], policy)
    out = jax.jit(lambda x, d: augment.apply(x, d, policy))(jnp.asarray(x), draws)
    expected = x.astype(np.float64)
    for name in policy.split(","):
        expected = NP[name](expected, np.asarray(draws[name], np.float64 if name == "color" else np.int64))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(jax.jit(lambda x: augment.augment(key, x, policy))(jnp.asarray(x)), out)


def test_draw_ranges_and_independence():
    n, shape = 4000, (32, 30, 3)
    d = augment.draw(jax.random.PRNGKey(0), n, shape, "translation,cutout,color")
    t, c, col = (np.asarray(d[k]) for k in ("translation", "cutout", "color"))
    assert (t[:, 0].min(), t[:, 0].max(), t[:, 1].min(), t[:, 1].max()) == (-4, 4, -4, 4)  # int(32/8+.5), int(30/8+.5)
    assert len(np.unique(t[:, 0])) == 9
    assert (c[:, 0].min(), c[:, 0].max()) == (0, 32)  # cutout 16 (even): centres in [0, H]
    assert (c[:, 1].min(), c[:, 1].max()) == (0, 29)  # cutout 15 (odd): centres in [0, W - 1]
    assert col.min() >= 0 and col.max() < 1 and abs(col.mean() - 0.5) < 0.02
    # a policy's draws do not depend on the others
    alone = augment.draw(jax.random.PRNGKey(0), n, shape, "cutout")
    np.testing.assert_array_equal(alone["cutout"], c)


@pytest.mark.parametrize("policy", ["translation", "cutout", "color", "translation,cutout,color"])
def test_gradient_matches_finite_differences(rng, policy):
    shape = (3, 16, 16, 3)
    x = jnp.asarray(rng.uniform(-1, 1, size=shape), jnp.float32)
    weights = jnp.asarray(rng.normal(size=shape), jnp.float32)
    direction = jnp.asarray(rng.normal(size=shape), jnp.float32)
    key = jax.random.PRNGKey(7)
    f = jax.jit(lambda x: jnp.sum(weights * jnp.tanh(augment.augment(key, x, policy))))
    grad = jax.jit(jax.grad(f))(x)
    h = 1e-2
    fd = (float(f(x + h * direction)) - float(f(x - h * direction))) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(grad * direction)), fd, rtol=2e-3, atol=1e-3)


def test_keys_give_different_reproducible_draws():
    x = jnp.ones((8, 16, 16, 1))
    a = augment.augment(jax.random.PRNGKey(0), x, "translation,cutout")
    b = augment.augment(jax.random.PRNGKey(1), x, "translation,cutout")
    np.testing.assert_array_equal(a, augment.augment(jax.random.PRNGKey(0), x, "translation,cutout"))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(augment.augment(jax.random.PRNGKey(0), x, ""), x)


def _images(rng, k, m=4, shape=(28, 28, 1)):
    return {"x": jnp.asarray(rng.uniform(-1, 1, size=(k, m, *shape)), jnp.float32)}


def test_step_with_augment_is_deterministic_and_leaves_the_other_draws_alone(rng):
    tiny = dict(model="dcgan", base_features=4, latent_dim=8)
    batch = _images(rng, 1)
    plain = gan.GANConfig(**tiny)
    state = gan.init(jax.random.PRNGKey(0), plain, batch)
    aug = state.replace(config=gan.GANConfig(augment="translation,cutout,color", **tiny))
    step = jax.jit(gan.step)
    s1, m1 = step(aug, batch)
    s2, _ = step(aug, batch)
    for a, b in zip(jax.tree_util.tree_leaves(s1), jax.tree_util.tree_leaves(s2), strict=True):
        np.testing.assert_array_equal(a, b)
    s0, m0 = step(state, batch)
    assert float(m0["d_loss"]) != float(m1["d_loss"])
    np.testing.assert_array_equal(s0.key, s1.key)  # the key stream moves on the same way
    assert np.isfinite(float(m1["d_loss"])) and np.isfinite(float(m1["g_loss"]))


def test_the_discriminator_sees_the_augmented_images(rng):
    """A GAN's D loss at the first update, recomputed by hand from the documented keys: reals augmented with
    fold_in(update key, 1), fakes with fold_in(update key, 2)."""
    config = gan.GANConfig(hidden=(16,), latent_dim=3, model="mlp", augment="translation,color")
    batch = _images(rng, 1, m=6, shape=(8, 8, 1))
    state = gan.init(jax.random.PRNGKey(3), config, batch)
    _, metrics = jax.jit(gan.step)(state, batch)
    _, d_key, _ = jax.random.split(state.key, 3)
    step_key = jax.random.split(d_key, 1)[0]
    z = jax.random.normal(jax.random.split(step_key)[0], (6, 3))
    fake = gan.generate(state, z)  # the MLP generator has no BatchNorm: train and inference modes agree
    real = augment.augment(jax.random.fold_in(step_key, 1), batch["x"][0], config.augment)
    fake = augment.augment(jax.random.fold_in(step_key, 2), fake, config.augment)
    loss, _ = gan.discriminator_loss(gan.discriminate(state, real), gan.discriminate(state, fake))
    np.testing.assert_allclose(metrics["d_loss"], loss, rtol=1e-5)


def test_bad_augment_raises_one_line(rng):
    with pytest.raises(ValueError, match=r"augment \(--augment\) takes .*unknown 'flip'") as info:
        gan.GANConfig(augment="translation,flip").validate()
    assert "\n" not in str(info.value)
    points = {"x": jnp.zeros((5, 8, 2))}
    with pytest.raises(ValueError, match=r"augment \(--augment\) transforms images .* shape \(2,\)"):
        wgan_gp.init(jax.random.PRNGKey(0), wgan_gp.WGANGPConfig(augment="color"), points)
