"""The pure train steps: one compile, determinism, and agreement with a step written out by hand."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gendl_jax.objectives import adversarial, gan, get_objective, wgan, wgan_gp, wgan_sn

TINY = dict(hidden=(16, 16), latent_dim=3)


def _batch(rng, k, m=8, shape=(2,), num_classes=0):
    batch = {"x": jnp.asarray(rng.normal(size=(k, m, *shape)), jnp.float32)}
    if num_classes:
        batch["y"] = jnp.asarray(rng.integers(0, num_classes, (k, m)), jnp.int32)
    return batch


IMAGE = (28, 28, 1)
CASES = [
    ("gan", gan.GANConfig(d_steps=2, **TINY), (2,)),
    ("gan", gan.GANConfig(generator_loss="saturating", g_batch_norm=True, **TINY), (2,)),
    ("wgan", wgan.WGANConfig(n_critic=3, **TINY), (2,)),
    ("wgan-gp", wgan_gp.WGANGPConfig(n_critic=3, **TINY), (2,)),
    ("wgan-sn", wgan_sn.WGANSNConfig(n_critic=2, **TINY), (2,)),
    ("gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8), IMAGE),
    ("wgan-sn", wgan_sn.WGANSNConfig(model="dcgan", base_features=4, latent_dim=8, n_critic=2), IMAGE),
    ("wgan-gp", wgan_gp.WGANGPConfig(model="dcgan", base_features=4, latent_dim=8, n_critic=2), IMAGE),
    ("gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8, num_classes=10, ema_decay=0.9), IMAGE),
]


@pytest.mark.parametrize("name,config,shape", CASES)
def test_step_compiles_once_and_is_deterministic(name, config, shape):
    obj = get_objective(name)
    rng = np.random.default_rng(0)
    _batch_of = lambda k: _batch(rng, k, shape=shape, num_classes=config.num_classes)
    state = obj.init(jax.random.PRNGKey(1), config, _batch_of(config.inner_steps))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, batch):
        return obj.step(state, batch)

    first = None
    for i in range(3):
        batch = _batch_of(config.inner_steps)
        new_state, metrics = step(state, batch)
        if i == 0:
            first = (state, batch, new_state, metrics)
        state = new_state
    chex.clear_trace_counter()
    # Same inputs, same outputs: the step is a pure function of (state, batch).
    s0, b0, s1, m1 = first
    again, m_again = step(s0, b0)
    chex.assert_trees_all_equal(again, s1)
    chex.assert_trees_all_equal(m_again, m1)
    assert int(state.step) == 3
    assert all(np.isfinite(v) for v in jax.device_get(metrics).values())
    expected = {"d_loss", "d_real", "d_fake", "d_grad_norm", "g_loss", "g_grad_norm"}
    if name != "gan":
        expected |= {"w1_estimate"}
    if name == "wgan-gp":
        expected |= {"gp", "grad_norm_interp"}
    assert set(metrics) == expected
    # BatchNorm running statistics (DCGAN generator and discriminator) are threaded through the step.
    for net in (state.generator, state.discriminator):
        if net.batch_stats:
            chex.assert_trees_all_equal_shapes(
                net.batch_stats, s0.generator.batch_stats if net is state.generator else s0.discriminator.batch_stats
            )
            moved = jax.tree_util.tree_map(
                lambda a, b: bool(jnp.any(a != b)),
                net.batch_stats,
                (s0.generator if net is state.generator else s0.discriminator).batch_stats,
            )
            assert all(jax.tree_util.tree_leaves(moved))


def test_wgan_critic_stays_in_the_clipping_box():
    config = wgan.WGANConfig(n_critic=2, clip=0.02, d_learning_rate=0.5, **TINY)
    rng = np.random.default_rng(1)
    state = wgan.init(jax.random.PRNGKey(0), config, _batch(rng, 2))
    state, _ = jax.jit(wgan.step)(state, _batch(rng, 2))
    leaves = jax.tree_util.tree_leaves(state.discriminator.params)
    assert max(float(jnp.max(jnp.abs(p))) for p in leaves) <= 0.02
    # With this large learning rate the box is active: some weights sit on its boundary.
    assert any(bool(jnp.any(jnp.abs(p) == 0.02)) for p in leaves)


def test_bad_batch_shape_raises():
    config = wgan_gp.WGANGPConfig(n_critic=5, **TINY)
    rng = np.random.default_rng(2)
    state = wgan_gp.init(jax.random.PRNGKey(0), config, _batch(rng, 5))
    with pytest.raises(ValueError, match="inner_steps=5"):
        wgan_gp.step(state, _batch(rng, 4))
    with pytest.raises(ValueError, match="examples have shape"):
        wgan_gp.step(state, _batch(rng, 5, shape=(3,)))


def test_bad_config_raises():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="d_learning_rate"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(d_learning_rate=0.0), _batch(rng, 1))
    with pytest.raises(ValueError, match="discriminator steps"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(d_steps=0), _batch(rng, 1))
    with pytest.raises(ValueError, match="clip"):
        wgan.init(jax.random.PRNGKey(0), wgan.WGANConfig(clip=-1.0), _batch(rng, 5))
    with pytest.raises(ValueError, match="d_extra_layers must be >= 0, got -1"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(d_extra_layers=-1), _batch(rng, 1))
    with pytest.raises(ValueError, match=r"g_extra_layers / d_extra_layers are DCGAN options; these networks are MLPs"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(model="mlp", g_extra_layers=1), _batch(rng, 1))


def test_extra_layers_reach_the_dcgan_networks_and_a_step_trains_them():
    rng = np.random.default_rng(4)
    config = gan.GANConfig(model="dcgan", base_features=4, latent_dim=8, g_extra_layers=2, d_extra_layers=1)
    batch = {"x": jnp.asarray(rng.uniform(-1, 1, size=(1, 6, 28, 28, 1)), jnp.float32)}  # (d_steps, m, H, W, C)
    state = gan.init(jax.random.PRNGKey(0), config, batch)
    assert {"extra0", "extra1"} <= set(state.generator.params) and {"extra_bn0", "extra_bn1"} <= set(
        state.generator.batch_stats
    )
    assert "extra0" in state.discriminator.params and "extra1" not in state.discriminator.params
    new, metrics = jax.jit(gan.step)(state, batch)
    assert np.isfinite(float(metrics["d_loss"])) and np.isfinite(float(metrics["g_loss"]))
    for net, old in ((new.generator, state.generator), (new.discriminator, state.discriminator)):
        assert not np.allclose(net.params["extra0"]["kernel"], old.params["extra0"]["kernel"])


def _previous_optimizers(config, g_lr, d_lr):
    """The optimisers as they were built before the learning rates moved into ``state.hparams``:
    ``optax.adam`` / ``optax.rmsprop`` with the learning rate (times the linear decay) inside."""

    def schedule(lr, n):
        return optax.linear_schedule(lr, 0.0, n) if n else lr

    n_g, n_d = config.lr_decay_steps, config.lr_decay_steps * config.inner_steps
    if config.optimizer == "adam":
        make = lambda lr, n: optax.adam(schedule(lr, n), b1=config.beta1, b2=config.beta2)
    else:
        make = lambda lr, n: optax.rmsprop(schedule(lr, n), decay=0.99, eps=1e-8)
    return make(g_lr, n_g), make(d_lr, n_d)


def _reference_step(state, batch, d_loss_fn, g_loss_fn, penalty_weight=0.0, clip=None):
    """Algorithm 1 written out with Python loops, for MLP networks without BatchNorm; returns
    ``(new_state, mean d_loss, g_loss)``.

    It follows the step's documented random stream: key -> (next, d_key, g_key); d_key -> one key
    per discriminator update -> (z_key, penalty_key). Learning rates are the state's, as Python floats.
    """
    config = state.config
    gen, disc = adversarial.build_networks(config, state.data_shape, batch_norm_in_d=False)
    labels = batch.get("y") if config.num_classes else None
    with_labels = lambda y: {} if labels is None else {"labels": y}
    g_tx, d_tx = _previous_optimizers(
        config, float(state.hparams["g_learning_rate"]), float(state.hparams["d_learning_rate"])
    )
    z_dim = config.latent_dim
    key, d_key, g_key = jax.random.split(state.key, 3)
    g_params, d_params, d_opt = state.generator.params, state.discriminator.params, state.discriminator.opt_state
    d_losses = []
    for i, (real, step_key) in enumerate(zip(batch["x"], jax.random.split(d_key, config.inner_steps))):
        z_key, p_key = jax.random.split(step_key)
        y = with_labels(None if labels is None else labels[i])
        fake = gen.apply({"params": g_params}, jax.random.normal(z_key, (real.shape[0], z_dim)), train=True, **y)

        def loss(p):
            critic = lambda x: disc.apply({"params": p}, x, train=True, **y)
            value = d_loss_fn(critic(real), critic(fake))[0]
            if penalty_weight:
                eps = jax.random.uniform(p_key, (real.shape[0],))
                if labels is None:
                    value += penalty_weight * wgan_gp.gradient_penalty(critic, real, fake, eps)[0]
                else:  # written out: the MLP critic scores each sample on its own, so grad of the sum is per sample
                    interpolates = eps[:, None] * real + (1.0 - eps[:, None]) * fake
                    grads = jax.grad(lambda x: critic(x).sum())(interpolates)
                    value += penalty_weight * jnp.mean(jnp.square(jnp.linalg.norm(grads, axis=1) - 1.0))
            return value

        value, grads = jax.value_and_grad(loss)(d_params)
        d_losses.append(value)
        updates, d_opt = d_tx.update(grads, d_opt, d_params)
        d_params = optax.apply_updates(d_params, updates)
        if clip is not None:
            d_params = jax.tree_util.tree_map(lambda w: np.clip(w, -clip, clip), d_params)
    z = jax.random.normal(g_key, (batch["x"].shape[1], z_dim))
    y = with_labels(None if labels is None else labels[-1])  # the last minibatch's labels
    g_loss, g_grads = jax.value_and_grad(
        lambda p: g_loss_fn(
            disc.apply({"params": d_params}, gen.apply({"params": p}, z, train=True, **y), train=True, **y)
        )
    )(g_params)
    updates, g_opt = g_tx.update(g_grads, state.generator.opt_state, g_params)
    new_state = state.replace(
        step=state.step + 1,
        key=key,
        generator=state.generator.replace(params=optax.apply_updates(g_params, updates), opt_state=g_opt),
        discriminator=state.discriminator.replace(params=d_params, opt_state=d_opt),
    )
    return new_state, np.mean(d_losses), g_loss


@pytest.mark.parametrize(
    "name,config,d_loss_fn,g_loss_fn,weight,clip,hparams",
    [
        (
            "gan",
            gan.GANConfig(d_steps=3, **TINY),
            gan.discriminator_loss,
            gan.non_saturating_generator_loss,
            0.0,
            None,
            {},
        ),
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(n_critic=2, gp_weight=10.0, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            10.0,
            None,
            {},
        ),
        # gp_weight=None resolves to 0.1 for vector data.
        ("wgan-gp", wgan_gp.WGANGPConfig(n_critic=2, **TINY), wgan.critic_loss, wgan.generator_loss, 0.1, None, {}),
        # The hinge loss of SN-GAN for both networks.
        (
            "gan",
            gan.GANConfig(d_steps=2, discriminator_loss="hinge", generator_loss="hinge", **TINY),
            gan.hinge_discriminator_loss,
            gan.hinge_generator_loss,
            0.0,
            None,
            {},
        ),
        # Linear decay; RMSprop and clipping.
        (
            "gan",
            gan.GANConfig(d_steps=2, lr_decay_steps=4, g_learning_rate=1e-3, d_learning_rate=3e-3, **TINY),
            gan.discriminator_loss,
            gan.non_saturating_generator_loss,
            0.0,
            None,
            {},
        ),
        (
            "wgan",
            wgan.WGANConfig(n_critic=2, lr_decay_steps=5, clip=0.05, d_learning_rate=1e-3, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            0.0,
            0.05,
            {},
        ),
        # Values set on the state (not the config) are the ones used.
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(n_critic=2, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            3.0,
            None,
            {"gp_weight": 3.0, "g_learning_rate": 2e-3, "d_learning_rate": 5e-4},
        ),
        (
            "wgan",
            wgan.WGANConfig(n_critic=2, d_learning_rate=1e-3, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            0.0,
            0.03,
            {"clip": 0.03},
        ),
        # Class-conditional: fakes for the labels of each real minibatch, projection discriminator / critic,
        # the penalty's interpolates scored with the pair's labels.
        (
            "gan",
            gan.GANConfig(d_steps=2, num_classes=3, **TINY),
            gan.discriminator_loss,
            gan.non_saturating_generator_loss,
            0.0,
            None,
            {},
        ),
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(n_critic=3, gp_weight=10.0, num_classes=4, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            10.0,
            None,
            {},
        ),
    ],
)
def test_step_matches_algorithm_written_out(name, config, d_loss_fn, g_loss_fn, weight, clip, hparams):
    """Three steps of the objective equal the algorithm with ``optax.adam(lr * decay)`` /
    ``optax.rmsprop`` as before the learning rates became state leaves (float32 rounding)."""
    obj = get_objective(name)
    rng = np.random.default_rng(4)
    batch = _batch(rng, config.inner_steps, m=16, num_classes=config.num_classes)
    state = adversarial.with_hparams(obj.init(jax.random.PRNGKey(5), config, batch), **hparams)
    ref = state
    step = jax.jit(obj.step)
    for _ in range(3):
        batch = _batch(rng, config.inner_steps, m=16, num_classes=config.num_classes)
        state, metrics = step(state, batch)
        ref, d_loss_ref, g_loss_ref = _reference_step(ref, batch, d_loss_fn, g_loss_fn, weight, clip)
        chex.assert_trees_all_close(state.generator.params, ref.generator.params, rtol=2e-4, atol=1e-6)
        chex.assert_trees_all_close(state.discriminator.params, ref.discriminator.params, rtol=2e-4, atol=1e-6)
        chex.assert_trees_all_close(state.generator.opt_state, ref.generator.opt_state, rtol=2e-4, atol=1e-6)
        chex.assert_trees_all_close(state.discriminator.opt_state, ref.discriminator.opt_state, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(metrics["d_loss"], d_loss_ref, rtol=1e-4)
        np.testing.assert_allclose(metrics["g_loss"], g_loss_ref, rtol=1e-4)


def test_hparams_are_state_leaves():
    rng = np.random.default_rng(7)
    b5 = _batch(rng, 5)
    state = wgan_gp.init(jax.random.PRNGKey(0), wgan_gp.WGANGPConfig(**TINY), b5)
    assert set(state.hparams) == {"g_learning_rate", "d_learning_rate", "gp_weight"}
    assert all(v.dtype == jnp.float32 and v.shape == () for v in state.hparams.values())
    np.testing.assert_allclose(state.hparams["gp_weight"], 0.1)  # resolved default for vector data
    state_w = wgan.init(jax.random.PRNGKey(0), wgan.WGANConfig(clip=0.02, **TINY), b5)
    assert set(state_w.hparams) == {"g_learning_rate", "d_learning_rate", "clip"}
    np.testing.assert_allclose(state_w.hparams["d_learning_rate"], 5e-5)
    assert set(gan.init(jax.random.PRNGKey(0), gan.GANConfig(**TINY), _batch(rng, 1)).hparams) == {
        "g_learning_rate",
        "d_learning_rate",
    }
    # A new value does not retrace the step: it is data, not part of the static config.
    step = jax.jit(chex.assert_max_traces(n=1)(wgan_gp.step))
    s1, m1 = step(state, b5)
    s2, m2 = step(adversarial.with_hparams(state, d_learning_rate=1e-2, gp_weight=5.0), b5)
    chex.clear_trace_counter()
    assert not np.allclose(m1["d_loss"], m2["d_loss"])  # same critic, same data: the penalty weight differs
    # (The critic's output bias has a zero gradient under the WGAN losses, so only the kernels move.)
    assert all(
        bool(jnp.any(s1.discriminator.params[layer]["kernel"] != s2.discriminator.params[layer]["kernel"]))
        for layer in s1.discriminator.params
    )


def test_with_hparams_checks_its_input():
    rng = np.random.default_rng(8)
    state = gan.init(jax.random.PRNGKey(0), gan.GANConfig(**TINY), _batch(rng, 1))
    with pytest.raises(
        ValueError,
        match=r"unknown hyper-parameters \['gp_weight'\].*valid: \['d_learning_rate', "
        r"'g_learning_rate'\]",
    ):
        adversarial.with_hparams(state, gp_weight=1.0)
    with pytest.raises(ValueError, match="g_learning_rate must be > 0"):
        adversarial.with_hparams(state, g_learning_rate=0.0)
    with pytest.raises(ValueError, match="d_learning_rate must be finite"):
        adversarial.with_hparams(state, d_learning_rate=float("nan"))
    with pytest.raises(ValueError, match=r"shape \(\)"):
        adversarial.with_hparams(state, d_learning_rate=[1e-3, 2e-3])
    gp_state = wgan_gp.init(jax.random.PRNGKey(0), wgan_gp.WGANGPConfig(**TINY), _batch(rng, 5))
    assert float(adversarial.with_hparams(gp_state, gp_weight=0.0).hparams["gp_weight"]) == 0.0  # >= 0 is allowed
    with pytest.raises(ValueError, match="gp_weight must be >= 0"):
        adversarial.with_hparams(gp_state, gp_weight=-1.0)
    # Stacked states take one value per model.
    stacked = jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf] * 3), state)
    new = adversarial.with_hparams(stacked, d_learning_rate=[1e-3, 2e-3, 3e-3], g_learning_rate=1e-4)
    np.testing.assert_allclose(new.hparams["d_learning_rate"], [1e-3, 2e-3, 3e-3], rtol=1e-7)
    np.testing.assert_allclose(new.hparams["g_learning_rate"], [1e-4] * 3, rtol=1e-7)


def test_d_grad_norm_is_the_mean_critic_gradient_norm():
    """With n_critic = 1 the metric is the norm of the critic's loss gradient at the initial state."""
    rng = np.random.default_rng(9)
    config = wgan_gp.WGANGPConfig(n_critic=1, gp_weight=0.0, **TINY)
    batch = _batch(rng, 1, m=16)
    state = wgan_gp.init(jax.random.PRNGKey(3), config, batch)
    _, metrics = jax.jit(wgan_gp.step)(state, batch)
    gen, disc = adversarial.build_networks(config, state.data_shape, batch_norm_in_d=False)
    _, d_key, _ = jax.random.split(state.key, 3)
    z_key, _ = jax.random.split(jax.random.split(d_key, 1)[0])
    fake = gen.apply({"params": state.generator.params}, jax.random.normal(z_key, (16, 3)), train=True)
    grads = jax.grad(
        lambda p: wgan.critic_loss(
            disc.apply({"params": p}, batch["x"][0], train=True), disc.apply({"params": p}, fake, train=True)
        )[0]
    )(state.discriminator.params)
    expected = np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in jax.tree_util.tree_leaves(grads)))
    np.testing.assert_allclose(metrics["d_grad_norm"], expected, rtol=1e-5)


def test_learning_rates_decay_together_in_train_steps():
    """lr_decay_steps counts train steps: with n_critic critic updates per step, the critic's
    schedule must not reach 0 n_critic times earlier than the generator's."""
    config = wgan_gp.WGANGPConfig(n_critic=5, lr_decay_steps=10, g_learning_rate=1e-3, d_learning_rate=1e-3, **TINY)
    rng = np.random.default_rng(6)
    state = wgan_gp.init(jax.random.PRNGKey(0), config, _batch(rng, 5))
    step = jax.jit(wgan_gp.step)
    for _ in range(4):
        state, _ = step(state, _batch(rng, 5))

    # After 4 of 10 steps both optimisers have made 40% of their updates: 4 (G) and 20 (critic).
    def counts(opt_state):  # Adam's and the schedule's step counters
        return {int(v) for _, v in optax.tree_utils.tree_get_all_with_path(opt_state, "count")}

    assert counts(state.generator.opt_state) == {4} and counts(state.discriminator.opt_state) == {20}
    # Mid-way the critic still learns (a schedule counted in critic updates would already be at 0).
    before = state.discriminator.params
    state, _ = step(state, _batch(rng, 5))
    assert not jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, state.discriminator.params, before))
    for _ in range(5):
        state, _ = step(state, _batch(rng, 5))
    before = state.discriminator.params
    state, _ = step(state, _batch(rng, 5))  # past the end of the schedule: lr 0, no update
    chex.assert_trees_all_equal(state.discriminator.params, before)


@pytest.mark.parametrize(
    "shape,expected", [((2,), "mlp"), ((8, 8, 1), "mlp"), ((28, 28, 1), "dcgan"), ((32, 32, 3), "dcgan")]
)
def test_auto_architecture(shape, expected):
    gen, disc = adversarial.build_networks(gan.GANConfig(), shape, batch_norm_in_d=True)
    names = {"mlp": ("MLPGenerator", "MLPDiscriminator"), "dcgan": ("DCGANGenerator", "DCGANDiscriminator")}
    assert (type(gen).__name__, type(disc).__name__) == names[expected]
    z = jnp.zeros((3, adversarial.latent_dim(gan.GANConfig(), shape)))
    assert jax.eval_shape(lambda: gen.init_with_output(jax.random.PRNGKey(0), z, train=False)[0]).shape == (3, *shape)


def test_discriminate_with_batch_statistics_is_what_the_step_saw():
    """``discriminate(..., batch_statistics=True)`` on the real minibatch gives the D(x) of the step's
    discriminator loss (BatchNorm on the batch's own statistics); inference mode does not."""
    rng = np.random.default_rng(7)
    config = gan.GANConfig(model="dcgan", base_features=4, latent_dim=8)
    batch = {"x": jnp.asarray(rng.uniform(-1, 1, size=(1, 16, 28, 28, 1)), jnp.float32)}
    state = gan.init(jax.random.PRNGKey(3), config, batch)
    state, _ = jax.jit(gan.step)(state, batch)  # running averages move away from their initial values
    _, metrics = jax.jit(gan.step)(state, batch)
    train_mode = jax.jit(lambda s, x: gan.discriminate(s, x, batch_statistics=True))(state, batch["x"][0])
    inference = jax.jit(gan.discriminate)(state, batch["x"][0])
    np.testing.assert_allclose(np.mean(jax.nn.sigmoid(train_mode)), metrics["d_real"], rtol=1e-5)
    assert not np.allclose(train_mode, inference, atol=1e-3)


@pytest.mark.parametrize(
    "name,config,shape",
    [
        ("gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8), IMAGE),
        ("gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8, num_classes=10), IMAGE),
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(model="dcgan", base_features=4, latent_dim=8, layer_norm=True, n_critic=1),
            IMAGE,
        ),
        ("gan", gan.GANConfig(**TINY), (2,)),
    ],
)
@pytest.mark.parametrize("batch_statistics", [False, True])
def test_discriminator_features_are_the_input_of_the_logit_layer(name, config, shape, batch_statistics):
    """``features @ kernel + bias`` of the ``logit`` layer (plus ``<V[y], features>`` for a projection
    discriminator) gives back :func:`discriminate`'s logits, in inference and in batch-statistics mode."""
    rng = np.random.default_rng()
    obj = get_objective(name)
    batch = _batch(rng, 1, m=16, shape=shape, num_classes=config.num_classes)
    state = obj.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), config, batch)
    x = batch["x"][0]
    labels = batch["y"][0] if config.num_classes else None
    features = jax.jit(
        lambda s, x, y: adversarial.discriminator_features(s, x, batch_statistics=batch_statistics, labels=y)
    )(state, x, labels)
    logits = jax.jit(lambda s, x, y: adversarial.discriminate(s, x, batch_statistics=batch_statistics, labels=y))(
        state, x, labels
    )
    params = state.discriminator.params
    f = np.asarray(features, np.float64)
    expected = f @ np.asarray(params["logit"]["kernel"], np.float64)[:, 0] + float(params["logit"]["bias"][0])
    if config.num_classes:
        v = np.asarray(params["projection"]["kernel"], np.float64)  # (F, num_classes)
        expected += np.sum(f * v.T[np.asarray(labels)], axis=1)
    width = 7 * 7 * 2 * config.base_features if shape == IMAGE else config.hidden[-1]
    assert features.shape == (16, width)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5)


def test_refit_discriminator_step_moves_only_d_and_minimises_eq5():
    rng = np.random.default_rng(8)
    config = gan.GANConfig(model="dcgan", base_features=4, latent_dim=8, ema_decay=0.9)
    batch = {"x": jnp.asarray(rng.uniform(-1, 1, size=(1, 16, 28, 28, 1)), jnp.float32)}
    state = gan.init(jax.random.PRNGKey(4), config, batch)
    state, _ = jax.jit(gan.step)(state, batch)
    real, key = batch["x"][0], jax.random.PRNGKey(5)
    tx = optax.sgd(0.05)
    step = jax.jit(functools.partial(gan.refit_discriminator_step, tx=tx))
    new, opt_state, metrics = step(state, tx.init(state.discriminator.params), real, key)
    # The loss it reports is eq. (5) on D with batch statistics, against the averaged generator's samples.
    fake = gan.generate(state, jax.random.normal(key, (16, 8)))

    def loss(params):
        d = state.replace(discriminator=state.discriminator.replace(params=params))
        s_real = gan.discriminate(d, real, batch_statistics=True)
        s_fake = gan.discriminate(d, fake, batch_statistics=True)
        return -jnp.mean(jax.nn.log_sigmoid(s_real)) - jnp.mean(jax.nn.log_sigmoid(-s_fake))

    np.testing.assert_allclose(metrics["d_loss"], loss(state.discriminator.params), rtol=1e-5)
    # One SGD step: params - lr * grad of that loss; the generator, its average and the step count stay.
    expected = jax.tree_util.tree_map(
        lambda p, g: p - 0.05 * g, state.discriminator.params, jax.grad(loss)(state.discriminator.params)
    )
    chex.assert_trees_all_close(new.discriminator.params, expected, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_equal(new.generator, state.generator)
    chex.assert_trees_all_equal(new.generator_ema, state.generator_ema)
    assert int(new.step) == int(state.step)
    for _ in range(20):
        new, opt_state, later = step(new, opt_state, real, key)
    assert float(later["d_loss"]) < float(metrics["d_loss"])


# Top-k generator training (Sinha et al. 2020)


def _top_k_count(updates, config, m):
    """k after ``updates`` generator updates, from the schedule as the paper states it."""
    fraction = max(config.top_k_fraction, config.top_k_decay ** (updates // config.top_k_period))
    return max(1, int(np.floor(fraction * m + 1e-6)))


def _top_k_loss(base_loss, k):
    """The generator loss on the k highest scores, picked with ``lax.top_k`` (the step ranks with argsort)."""
    return lambda scores: base_loss(jax.lax.top_k(scores, k)[0])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.77, 1.0])
def test_top_k_weights_against_numpy(fraction):
    rng = np.random.default_rng()
    for m in (1, 7, 64):
        scores = rng.normal(size=m).astype(np.float32)
        weights = np.asarray(jax.jit(adversarial.top_k_weights)(jnp.asarray(scores), fraction))
        k = max(1, int(np.floor(fraction * m + 1e-6)))
        expected = np.zeros(m)
        expected[np.argsort(-scores.astype(np.float64))[:k]] = m / k
        np.testing.assert_allclose(weights, expected, rtol=1e-6)
        values = rng.normal(size=m)
        np.testing.assert_allclose(
            adversarial.weighted_mean(jnp.asarray(values, jnp.float32), jnp.asarray(weights)),
            values[np.argsort(-scores)[:k]].mean(),
            rtol=1e-5,
            atol=1e-6,
        )
    # Ties go to the earlier sample, and the count is exact where fraction * m is an integer in float32 rounding.
    tied = jnp.array([1.0, 3.0, 3.0, 0.0, 3.0, 2.0])
    np.testing.assert_array_equal(
        np.asarray(adversarial.top_k_weights(tied, 0.5)) > 0, [False, True, True, False, True, False]
    )
    np.testing.assert_array_equal(
        np.asarray(adversarial.top_k_weights(tied, 1 / 3)) > 0, [False, True, True, False, False, False]
    )


def test_top_k_schedule():
    config = gan.GANConfig(top_k_fraction=0.5, top_k_decay=0.9, top_k_period=3, **TINY)
    got = np.asarray(jax.jit(jax.vmap(lambda t: adversarial.top_k_kept_fraction(t, config)))(jnp.arange(40)))
    expected = [max(0.5, 0.9 ** (t // 3)) for t in range(40)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == 1.0 and got[-1] == 0.5


@pytest.mark.parametrize(
    "name,config,d_loss_fn,g_loss_fn,weight",
    [
        (
            "gan",
            gan.GANConfig(d_steps=2, top_k_fraction=0.25, top_k_decay=0.5, top_k_period=2, **TINY),
            gan.discriminator_loss,
            gan.non_saturating_generator_loss,
            0.0,
        ),
        (
            "gan",
            gan.GANConfig(generator_loss="saturating", top_k_fraction=0.6, top_k_decay=0.8, top_k_period=1, **TINY),
            gan.discriminator_loss,
            gan.saturating_generator_loss,
            0.0,
        ),
        (
            "wgan-gp",
            wgan_gp.WGANGPConfig(n_critic=2, top_k_fraction=0.5, top_k_decay=0.7, top_k_period=1, **TINY),
            wgan.critic_loss,
            wgan.generator_loss,
            0.1,
        ),
    ],
)
def test_top_k_step_matches_algorithm_written_out(name, config, d_loss_fn, g_loss_fn, weight):
    """Five steps with top-k training equal the written-out algorithm whose generator loss is the plain
    loss on ``lax.top_k`` of the scores, with k from the schedule (16 fakes: k runs 16, 16, 8, 8, 4...)."""
    obj = get_objective(name)
    rng = np.random.default_rng()
    m = 16
    state = obj.init(jax.random.PRNGKey(int(rng.integers(1 << 30))), config, _batch(rng, config.inner_steps, m=m))
    ref = state
    step = jax.jit(obj.step)
    kept = []
    for t in range(5):
        batch = _batch(rng, config.inner_steps, m=m)
        state, metrics = step(state, batch)
        k = _top_k_count(t, config, m)
        kept.append(k)
        ref, _d_loss_ref, g_loss_ref = _reference_step(ref, batch, d_loss_fn, _top_k_loss(g_loss_fn, k), weight)
        chex.assert_trees_all_close(state.generator.params, ref.generator.params, rtol=2e-4, atol=1e-6)
        chex.assert_trees_all_close(state.discriminator.params, ref.discriminator.params, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(metrics["g_loss"], g_loss_ref, rtol=1e-4)
        np.testing.assert_allclose(
            metrics["g_top_k_fraction"],
            max(config.top_k_fraction, config.top_k_decay ** (t // config.top_k_period)),
            rtol=1e-6,
        )
    assert kept[0] == m and kept[-1] < m  # the schedule did move within the test


def test_top_k_leaves_samples_outside_it_without_gradient():
    """The generator's gradient with top-k equals the gradient of the loss on the top-k samples alone."""
    rng = np.random.default_rng()
    scores = jnp.asarray(rng.normal(size=12), jnp.float32)
    for loss in (gan.non_saturating_generator_loss, gan.saturating_generator_loss, wgan.generator_loss):
        grad = jax.grad(lambda s: loss(s, jax.lax.stop_gradient(adversarial.top_k_weights(s, 0.25))))(scores)
        keep = np.argsort(-np.asarray(scores))[:3]
        expected = np.zeros(12)
        expected[keep] = np.asarray(jax.grad(loss)(scores[keep]))
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("top_k_fraction", 0.0, r"top_k_fraction must be in \(0, 1\]"),
        ("top_k_fraction", 1.5, r"top_k_fraction must be in \(0, 1\]"),
        ("top_k_decay", 0.0, r"top_k_decay must be in \(0, 1\]"),
        ("top_k_period", 0, "top_k_period must be >= 1"),
    ],
)
def test_bad_top_k_config_raises(field, value, message):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=message):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(**{field: value}, **TINY), _batch(rng, 1))


def test_conditional_batch_errors_and_unconditional_steps_ignore_labels():
    rng = np.random.default_rng(7)
    config = gan.GANConfig(d_steps=2, num_classes=3, **TINY)
    batch = _batch(rng, 2, num_classes=3)
    state = gan.init(jax.random.PRNGKey(0), config, batch)
    with pytest.raises(
        ValueError,
        match=r"num_classes=3\) needs batch\['y'\], the labels of batch\['x'\], of shape "
        r"\(2, 8\); the batch has \['x'\]",
    ):
        gan.step(state, {"x": batch["x"]})
    with pytest.raises(ValueError, match=r"batch\['y'\] must be ints of shape \(2, 8\).*got shape \(2, 7\)"):
        gan.step(state, {**batch, "y": batch["y"][:, :7]})
    with pytest.raises(ValueError, match=r"got shape \(2, 8\) and dtype float32"):
        gan.step(state, {**batch, "y": batch["y"].astype(jnp.float32)})
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        gan.init(jax.random.PRNGKey(0), gan.GANConfig(num_classes=-1, **TINY), batch)
    # an unconditional step reads batch["x"] only (the fit loop's batches of labelled data carry "y" too)
    plain = gan.init(jax.random.PRNGKey(0), gan.GANConfig(d_steps=2, **TINY), batch)
    step = jax.jit(gan.step)
    chex.assert_trees_all_equal(step(plain, batch), step(plain, {"x": batch["x"]}))


def test_conditional_sampling_draws_uniform_labels_from_the_key_and_keeps_the_latents():
    rng = np.random.default_rng(8)
    config = gan.GANConfig(num_classes=4, ema_decay=0.5, **TINY)
    state = gan.init(jax.random.PRNGKey(0), config, _batch(rng, 1, num_classes=4))
    state, _ = jax.jit(gan.step)(state, _batch(rng, 1, num_classes=4))
    key = jax.random.PRNGKey(3)
    labels = adversarial.sample_labels(state, key, 4000)
    assert labels.shape == (4000,) and labels.dtype == jnp.int32
    counts = np.bincount(np.asarray(labels), minlength=4)
    assert counts.size == 4 and np.all(np.abs(counts - 1000) < 4 * np.sqrt(4000 * 0.25 * 0.75))  # uniform, 4 SE
    z = jax.random.normal(key, (4000, config.latent_dim))  # the latents of an unconditional model's sample
    sample = jax.jit(gan.sample, static_argnums=2, static_argnames="ema")
    for ema in (True, False):
        np.testing.assert_array_equal(
            sample(state, key, 4000, ema=ema), adversarial.generate(state, z, ema=ema, labels=labels)
        )
    given = jnp.full((4000,), 2, jnp.int32)
    np.testing.assert_array_equal(
        gan.sample(state, key, 4000, labels=given), adversarial.generate(state, z, labels=given)
    )
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=4\): pass labels"):
        adversarial.generate(state, z)
    unconditional = gan.init(jax.random.PRNGKey(0), gan.GANConfig(**TINY), _batch(rng, 1))
    assert adversarial.sample_labels(unconditional, key, 5) is None
    # the discriminator scores each sample with its label
    x = gan.sample(state, key, 6)
    scores = [adversarial.discriminate(state, x, labels=jnp.full((6,), c, jnp.int32)) for c in range(4)]
    assert np.ptp(np.stack(scores), axis=0).min() > 0
