"""R1, R2, DRAGAN, the one-sided gradient penalty and lazy regularisation: the penalties against float64 central
finite differences of a critic written in numpy, and in the train step against the same step with the weight
scaled (lazy regularisation) or the penalty computed separately."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.objectives import adversarial, gan, penalties, wgan_gp, wgan_sn

TINY = dict(hidden=(16, 16), latent_dim=3)


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _critic_pair(rng, d, scale, gain=1.0):
    """The same smooth critic f(x) = v . tanh(W x) + c |x|^2 in jax (float32) and numpy (float64)."""
    w = rng.normal(size=(d, 7)) * scale
    v, c = rng.normal(size=7) * gain, 0.3 * gain

    def jax_critic(x):
        flat = x.reshape(x.shape[0], -1)
        return jnp.tanh(flat @ jnp.asarray(w, jnp.float32)) @ jnp.asarray(v, jnp.float32) + c * jnp.sum(flat**2, 1)

    def np_critic(x):
        flat = x.reshape(x.shape[0], -1)
        return np.tanh(flat @ w) @ v + c * np.sum(flat**2, 1)

    return jax_critic, np_critic


def _fd_grads(f, x, h=1e-6):
    """Per-sample input gradients of f by float64 central differences: x (n, *shape) -> (n, prod(shape))."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    grads = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        e = np.zeros_like(flat)
        e[:, j] = h
        grads[:, j] = (f((flat + e).reshape(x.shape)) - f((flat - e).reshape(x.shape))) / (2 * h)
    return grads


@pytest.mark.parametrize("shape", [(3,), (4, 4, 2)])
def test_r1_r2_match_finite_differences(rng, shape):
    d = int(np.prod(shape))
    critic, ref = _critic_pair(rng, d, 1.0)
    real, fake = rng.normal(size=(6, *shape)), rng.normal(size=(6, *shape)) * 2
    eps = jnp.zeros(6)
    r1, m1 = jax.jit(lambda r, f: penalties.r1_penalty(critic, r, f, eps))(jnp.float32(real), jnp.float32(fake))
    r2, m2 = jax.jit(lambda r, f: penalties.r2_penalty(critic, r, f, eps))(jnp.float32(real), jnp.float32(fake))
    ref_r1 = 0.5 * np.mean(np.sum(_fd_grads(ref, real) ** 2, 1))
    ref_r2 = 0.5 * np.mean(np.sum(_fd_grads(ref, fake) ** 2, 1))
    np.testing.assert_allclose(r1, ref_r1, rtol=1e-4)
    np.testing.assert_allclose(r2, ref_r2, rtol=1e-4)
    assert float(m1["r1"]) == float(r1) and float(m2["r2"]) == float(r2)


def test_dragan_matches_the_reference_perturbation_and_finite_differences(rng):
    critic, ref = _critic_pair(rng, 5, 0.7)
    real = rng.normal(size=(8, 5)) * 1.5 + 0.3
    key = jax.random.PRNGKey(4)
    value, metrics = jax.jit(lambda r: penalties.dragan_penalty(key)(critic, r, r, jnp.zeros(8)))(jnp.float32(real))
    u, alpha = (np.asarray(a, np.float64) for a in penalties.dragan_draws(key, jnp.float32(real)))
    assert u.shape == real.shape and alpha.shape == (8,) and u.min() >= 0 and u.max() < 1
    real32 = real.astype(np.float32).astype(np.float64)
    # x_p = x + 0.5 std(x) U(0,1) (per element, std over the whole minibatch), x_hat = x + alpha (x_p - x)
    x_p = real32 + 0.5 * np.std(real32) * u
    x_hat = real32 + alpha[:, None] * (x_p - real32)
    norms = np.linalg.norm(_fd_grads(ref, x_hat), axis=1)
    np.testing.assert_allclose(value, np.mean((norms - 1.0) ** 2), rtol=1e-4)
    np.testing.assert_allclose(metrics["grad_norm_dragan"], norms.mean(), rtol=1e-4)


@pytest.mark.parametrize("one_sided", [False, True])
def test_one_sided_gradient_penalty_matches_finite_differences(rng, one_sided):
    real, fake, eps = rng.normal(size=(16, 4)), rng.normal(size=(16, 4)) * 0.5, rng.uniform(size=16)
    r32, f32, e32 = (a.astype(np.float32).astype(np.float64) for a in (real, fake, eps))
    x_hat = e32[:, None] * r32 + (1 - e32[:, None]) * f32
    state = rng.bit_generator.state
    gain = 1.0 / np.median(np.linalg.norm(_fd_grads(_critic_pair(rng, 4, 0.6)[1], x_hat), axis=1))
    rng.bit_generator.state = state  # the same critic, scaled so that the norms straddle 1
    critic, ref = _critic_pair(rng, 4, 0.6, gain)
    value, metrics = jax.jit(lambda r, f, e: wgan_gp.gradient_penalty(critic, r, f, e, one_sided=one_sided))(
        jnp.float32(real), jnp.float32(fake), jnp.float32(eps)
    )
    norms = np.linalg.norm(_fd_grads(ref, x_hat), axis=1)
    assert norms.min() < 1 < norms.max()  # both sides of 1 are exercised
    excess = np.maximum(norms - 1, 0) if one_sided else norms - 1
    np.testing.assert_allclose(value, np.mean(excess**2), rtol=1e-4)
    np.testing.assert_allclose(metrics["grad_norm_interp"], norms.mean(), rtol=1e-4)


def test_squared_norms_have_a_finite_gradient_at_a_zero_input_gradient():
    critic = lambda x, w: jnp.sum(x * w, axis=1)
    g = jax.grad(
        lambda w: jnp.sum(penalties.per_sample_squared_gradient_norms(lambda x: critic(x, w), jnp.ones((2, 3))))
    )
    np.testing.assert_array_equal(g(jnp.zeros(3)), np.zeros(3))


def test_lazy_scaled_sum_over_k_updates_matches(rng):
    k, value = 3, float(np.float32(rng.uniform(1, 2)))
    fn = lambda: (jnp.float32(value), {"r1": jnp.float32(value)})
    lazy = jax.jit(lambda t: penalties.lazy(k, t, fn))
    outs = [lazy(t) for t in range(2 * k)]
    values = np.array([float(v) for v, _ in outs])
    np.testing.assert_allclose(values, [k * value, 0, 0, k * value, 0, 0], rtol=1e-7)
    for start in range(k + 1):  # any k consecutive updates: k times the penalty once == the penalty k times
        np.testing.assert_allclose(values[start : start + k].sum(), k * value, rtol=1e-6)
    assert [float(m["r1"]) for _, m in outs] == [value if t % k == 0 else 0.0 for t in range(2 * k)]


def _batch(rng, k, m=8, shape=(2,)):
    return {"x": jnp.asarray(rng.normal(size=(k, m, *shape)), jnp.float32)}


def _leaves_close(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "config",
    [
        gan.GANConfig(r1_weight=0.7, penalty_every=2, **TINY),
        wgan_sn.WGANSNConfig(r2_weight=0.4, dragan_weight=0.3, n_critic=1, penalty_every=3, **TINY),
    ],
)
def test_lazy_step_is_the_step_with_k_times_the_weight_on_regularised_updates(rng, config):
    """One D update per step: update t is regularised iff t % k == 0, with weight k * w; the others are the step
    without the penalty. Both compared with steps of the same state whose config sets that weight directly."""
    import dataclasses

    obj = {"GANConfig": gan, "WGANSNConfig": wgan_sn}[type(config).__name__]
    k = config.penalty_every
    state = obj.init(jax.random.PRNGKey(0), config, _batch(rng, 1))
    step = jax.jit(obj.step)
    scaled = {n: getattr(config, n) * k for n in ("r1_weight", "r2_weight", "dragan_weight")}
    eager = dataclasses.replace(config, penalty_every=1, **scaled)
    none = dataclasses.replace(config, penalty_every=1, r1_weight=0.0, r2_weight=0.0, dragan_weight=0.0)
    for t in range(k + 1):
        batch = _batch(rng, 1)
        new, metrics = step(state, batch)
        expected, exp_metrics = step(state.replace(config=eager if t % k == 0 else none), batch)
        _leaves_close(new.replace(config=None), expected.replace(config=None))
        np.testing.assert_allclose(metrics["d_loss"], exp_metrics["d_loss"], rtol=1e-6)
        state = new


def test_step_penalises_the_minibatch_d_saw_with_the_current_discriminator(rng):
    """With d_steps = 2 and penalty_every = 2 the logged r1 is half the first update's R1 (the second reads 0)."""
    config = gan.GANConfig(r1_weight=1.0, penalty_every=2, d_steps=2, **TINY)
    state = gan.init(jax.random.PRNGKey(1), config, _batch(rng, 2))
    for _ in range(2):
        batch = _batch(rng, 2)
        critic = lambda x, s=state: gan.discriminate(s, x)
        r1, _ = penalties.r1_penalty(critic, batch["x"][0], None, None)
        state, metrics = jax.jit(gan.step)(state, batch)
        np.testing.assert_allclose(metrics["r1"], 0.5 * float(r1), rtol=1e-5)


def test_conditional_critic_gets_the_labels(rng):
    config = gan.GANConfig(r1_weight=1.0, num_classes=3, **TINY)
    batch = {**_batch(rng, 1), "y": jnp.asarray(rng.integers(0, 3, (1, 8)), jnp.int32)}
    state = gan.init(jax.random.PRNGKey(2), config, batch)
    critic = lambda x, labels=None: gan.discriminate(state, x, labels=labels)
    r1, _ = penalties.r1_penalty(critic, batch["x"][0], None, None, labels=batch["y"][0])
    _, metrics = jax.jit(gan.step)(state, batch)
    np.testing.assert_allclose(metrics["r1"], r1, rtol=1e-5)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("r1_weight", -1.0, r"r1_weight \(--r1-weight\) must be >= 0"),
        ("r2_weight", -0.1, r"r2_weight \(--r2-weight\) must be >= 0"),
        ("dragan_weight", float("nan"), r"dragan_weight \(--dragan-weight\) must be >= 0"),
        ("penalty_every", 0, r"penalty_every \(--penalty-every\) must be an int >= 1"),
    ],
)
def test_bad_penalty_options_raise_one_line(rng, field, value, match):
    with pytest.raises(ValueError, match=match) as info:
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(**{field: value}, **TINY), _batch(rng, 1))
    assert "\n" not in str(info.value)


def test_penalty_hook_takes_several_penalties(rng):
    """adversarial_step's ``penalty`` accepts (penalty, weight) pairs: two halves of R1 equal R1 once."""
    config = gan.GANConfig(**TINY)
    state = gan.init(jax.random.PRNGKey(3), config, _batch(rng, 1))
    batch = _batch(rng, 1)
    common = dict(
        discriminator_loss=gan.discriminator_loss,
        generator_loss=gan.non_saturating_generator_loss,
        batch_norm_in_d=True,
    )
    one = adversarial.adversarial_step(state, batch, penalty=penalties.r1_penalty, penalty_weight=2.0, **common)
    two = adversarial.adversarial_step(
        state,
        batch,
        penalty=[(penalties.r1_penalty, 1.0), (penalties.r2_penalty, 0.0), (penalties.r1_penalty, 1.0)],
        **common,
    )
    _leaves_close(one[0].replace(config=None), two[0].replace(config=None))
