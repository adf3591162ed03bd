"""DCGAN generator / discriminator / critic: sizes, the architecture rules, BatchNorm behaviour, a
PyTorch reference (optional) and input validation."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.models import DCGANDiscriminator, DCGANGenerator, conv_critic

BASE = 4  # small widths keep the tests fast; the architecture does not depend on them


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _init(module, x):
    return module.init(jax.random.key(0), jnp.asarray(x), train=False)


# image side -> (number of stride-2 blocks, smallest spatial size)
SIZES = {28: (2, 7), 32: (3, 4), 64: (4, 4)}


def _shapes(module, x):
    """(variables, output) shapes of a train-mode call, without running it."""
    variables = jax.eval_shape(lambda: _init(module, x))
    out = jax.eval_shape(lambda v: module.apply(v, x, train=True, mutable=["batch_stats"])[0], variables)
    return variables, out


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 3)])
def test_generator_output_size_widths_and_batch_norm_placement(rng, size, channels):
    n, s0 = SIZES[size]
    gen = DCGANGenerator(image_shape=(size, size, channels), base_features=BASE)
    z = rng.normal(size=(3, 10)).astype(np.float32)
    variables, images = _shapes(gen, z)
    assert images.shape == (3, size, size, channels) and images.dtype == jnp.float32

    params = variables["params"]
    c0 = BASE * 2 ** (n - 1)
    assert params["project"]["kernel"].shape == (10, s0 * s0 * c0)
    widths = [c0 // 2**i for i in range(n)] + [channels]
    for i in range(1, n):
        assert params[f"deconv{i}"]["kernel"].shape == (4, 4, widths[i], widths[i - 1])
    assert params["output"]["kernel"].shape == (4, 4, channels, widths[n - 1])
    # BatchNorm after the projection and every hidden block, never after the output layer
    assert set(variables["batch_stats"]) == {f"bn{i}" for i in range(n)}
    assert [variables["batch_stats"][f"bn{i}"]["mean"].shape for i in range(n)] == [(w,) for w in widths[:n]]
    assert "bias" in params["output"] and "bias" not in params["deconv1"]  # BatchNorm's bias replaces it


def test_generator_default_widths_for_28_and_64():
    for shape, widths in [((28, 28, 1), [128, 64]), ((64, 64, 3), [512, 256, 128, 64])]:
        gen = DCGANGenerator(image_shape=shape)
        shapes = jax.eval_shape(lambda: gen.init(jax.random.key(0), jnp.zeros((1, 100)), train=False))
        assert [shapes["batch_stats"][f"bn{i}"]["mean"].shape[0] for i in range(len(widths))] == widths


@pytest.mark.parametrize("size", sorted(SIZES))
def test_discriminator_output_and_normalisation_placement(rng, size):
    n, s_last = SIZES[size]
    x = rng.uniform(-1, 1, size=(3, size, size, 2)).astype(np.float32)
    for kwargs, norm in [({}, "bn"), ({"layer_norm": True, "batch_norm": False}, "ln"), ({"batch_norm": False}, None)]:
        disc = DCGANDiscriminator(base_features=BASE, **kwargs)
        variables, y = _shapes(disc, x)
        assert y.shape == (3,) and y.dtype == jnp.float32
        params = variables["params"]
        assert [params[f"conv{i}"]["kernel"].shape for i in range(n)] == [
            (4, 4, 2 if i == 0 else BASE * 2 ** (i - 1), BASE * 2**i) for i in range(n)
        ]
        assert params["logit"]["kernel"].shape == (s_last * s_last * BASE * 2 ** (n - 1), 1)
        # no normalisation at the input layer, one on every other layer
        assert "bias" in params["conv0"] and not any(k.endswith("0") and k != "conv0" for k in params)
        normalised = {k for k in params if k.startswith(("bn", "ln"))}
        assert normalised == ({f"{norm}{i}" for i in range(1, n)} if norm else set())
        assert set(variables.get("batch_stats", {})) == ({f"bn{i}" for i in range(1, n)} if norm == "bn" else set())


@pytest.mark.parametrize("size", sorted(SIZES))
def test_extra_layers_keep_size_and_width_and_are_normalised_like_their_neighbours(rng, size):
    n, _ = SIZES[size]
    gen = DCGANGenerator(image_shape=(size, size, 1), base_features=BASE, extra_layers=2)
    variables, images = _shapes(gen, rng.normal(size=(3, 10)).astype(np.float32))
    assert images.shape == (3, size, size, 1)
    params = variables["params"]
    for j in range(2):  # at the last hidden map's width, BatchNorm-ed, no bias
        assert params[f"extra{j}"]["kernel"].shape == (3, 3, BASE, BASE) and "bias" not in params[f"extra{j}"]
    assert set(variables["batch_stats"]) == {f"bn{i}" for i in range(n)} | {"extra_bn0", "extra_bn1"}
    x = rng.uniform(-1, 1, size=(3, size, size, 2)).astype(np.float32)
    for kwargs, norm in [({}, "extra_bn"), ({"layer_norm": True}, "extra_ln"), ({"batch_norm": False}, None)]:
        disc = DCGANDiscriminator(base_features=BASE, extra_layers=1, **kwargs)
        variables, y = _shapes(disc, x)
        params = variables["params"]
        assert y.shape == (3,) and params["extra0"]["kernel"].shape == (3, 3, BASE, BASE)
        assert ("bias" in params["extra0"]) == (norm is None)  # a bias only where no normalisation follows
        assert (f"{norm}0" in params) if norm else not any(k.startswith("extra_") for k in params)


def test_layer_norm_overrides_batch_norm_and_conv_critic_has_no_batch_norm(rng):
    x = rng.normal(size=(2, 28, 28, 1)).astype(np.float32)
    variables, _ = _shapes(DCGANDiscriminator(base_features=BASE, layer_norm=True), x)
    assert "batch_stats" not in variables and "ln1" in variables["params"]
    for layer_norm in (False, True):
        critic = conv_critic(base_features=BASE, layer_norm=layer_norm)
        assert isinstance(critic, DCGANDiscriminator) and not critic.batch_norm
        assert "batch_stats" not in _shapes(critic, x)[0]


def _first_output_depends_on_rest(module, variables, x, train):
    x2 = x.copy()
    x2[1:] = 2.0 * x2[1:] + 0.5
    f = jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=["batch_stats"])[0])
    return not np.allclose(f(variables, x)[0], f(variables, x2)[0], rtol=1e-6, atol=1e-6)


def test_train_false_uses_running_averages(rng):
    gen = DCGANGenerator(image_shape=(28, 28, 1), base_features=BASE)
    z = rng.normal(size=(4, 8)).astype(np.float32)
    g_vars = _init(gen, z)
    images = jax.jit(lambda v, z: gen.apply(v, 30.0 * z, train=False))(g_vars, z)
    assert np.abs(np.asarray(images)).max() <= 1.0  # tanh output
    assert _first_output_depends_on_rest(gen, g_vars, z, train=True)
    assert not _first_output_depends_on_rest(gen, g_vars, z, train=False)

    x = rng.uniform(-1, 1, size=(4, 28, 28, 1)).astype(np.float32)
    disc = DCGANDiscriminator(base_features=BASE)
    d_vars = _init(disc, x)
    assert _first_output_depends_on_rest(disc, d_vars, x, train=True)
    assert not _first_output_depends_on_rest(disc, d_vars, x, train=False)
    # the critic (no BatchNorm) is per sample even when training
    critic = conv_critic(base_features=BASE, layer_norm=True)
    assert not _first_output_depends_on_rest(critic, _init(critic, x), x, train=True)


def test_batch_stats_update_with_momentum_0_9(rng):
    gen = DCGANGenerator(image_shape=(28, 28, 1), base_features=BASE)
    z = rng.normal(size=(16, 8)).astype(np.float32)
    variables = _init(gen, z)
    _, updated = jax.jit(lambda v, z: gen.apply(v, z, train=True, mutable=["batch_stats"]))(variables, z)
    pre = (z.astype(np.float64) @ np.asarray(variables["params"]["project"]["kernel"], np.float64)).reshape(
        16, 7, 7, -1
    )
    batch_mean, batch_var = pre.mean((0, 1, 2)), pre.var((0, 1, 2))
    np.testing.assert_allclose(updated["batch_stats"]["bn0"]["mean"], 0.1 * batch_mean, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(updated["batch_stats"]["bn0"]["var"], 0.9 + 0.1 * batch_var, rtol=1e-4)


def test_generator_second_order_gradient(rng):
    """jax.grad of a function of the generator output's input-gradient (e.g. a penalty on z)."""
    gen = DCGANGenerator(image_shape=(28, 28, 1), base_features=BASE)
    z = rng.normal(size=(2, 8)).astype(np.float32)
    variables = _init(gen, z)

    def penalty(params):
        g = jax.grad(lambda z: jnp.sum(gen.apply({**variables, "params": params}, z, train=False) ** 2))(z)
        return jnp.sum(g**2)

    grads = jax.jit(jax.grad(penalty))(variables["params"])
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.isfinite(leaf).all() for leaf in leaves) and any(np.abs(leaf).max() > 0 for leaf in leaves)


@pytest.mark.parametrize("layer_norm,extra_layers", [(False, 0), (True, 0), (True, 1)])
def test_critic_gradient_penalty_and_its_gradient_match_the_nn_conv_critic(rng, monkeypatch, layer_norm, extra_layers):
    """The critic's layers.Conv (custom-vjp, fast double backward) against the same critic built on
    flax's nn.Conv (plain autodiff): WGAN-GP penalty value and its gradient w.r.t. the critic's params."""
    import flax.linen as nn

    from gendl_jax.models import dcgan
    from gendl_jax.objectives import wgan_gp

    critic = conv_critic(base_features=BASE, layer_norm=layer_norm, extra_layers=extra_layers)
    m = 5
    real, fake = (rng.uniform(-1, 1, size=(m, 28, 28, 1)).astype(np.float32) for _ in range(2))
    eps = rng.uniform(size=m).astype(np.float32)
    params = _init(critic, real)["params"]
    params = jax.tree_util.tree_map(lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32), params)

    def penalty_and_grad():
        def penalty(params):
            return wgan_gp.gradient_penalty(
                lambda x: critic.apply({"params": params}, x, train=False), real, fake, eps
            )[0]

        return jax.jit(jax.value_and_grad(penalty))(params)

    ours = penalty_and_grad()
    built = []

    def flax_conv(features, padding, **kw):
        built.append(features)
        return nn.Conv(features, padding=((padding,) * 2,) * 2, **kw)

    with monkeypatch.context() as patch:
        patch.setattr(dcgan, "Conv", flax_conv)
        ref = penalty_and_grad()
    assert built and float(ref[0]) > 0
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
    flat, flat_ref = jax.tree_util.tree_leaves_with_path(ours[1]), jax.tree_util.tree_leaves(ref[1])
    assert len(flat) == len(flat_ref)
    for (path, a), b in zip(flat, flat_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max(), err_msg=jax.tree_util.keystr(path))


def _torch_reference(torch, g_params, d_params, z, fake_cotangent, g_extra=0, d_extra=0):
    """28x28 DCGAN (with ``g_extra`` / ``d_extra`` extra 3x3 blocks) written with torch.nn.functional,
    train-mode BatchNorm, float64."""
    F = torch.nn.functional
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)
    gp = jax.tree_util.tree_map(t, g_params)
    dp = jax.tree_util.tree_map(t, d_params)

    def bn(h, p):
        return F.batch_norm(h, None, None, p["scale"], p["bias"], training=True, eps=1e-5)

    def convt_weight(k):  # (kh, kw, C_out, C_in) -> (C_in, C_out, kh, kw)
        return k.permute(3, 2, 0, 1)

    zt = torch.tensor(z, dtype=torch.float64)
    h = zt @ gp["project"]["kernel"]
    c0 = h.shape[1] // 49
    h = h.reshape(-1, 7, 7, c0).permute(0, 3, 1, 2)
    h = F.relu(bn(h, gp["bn0"]))
    h = F.relu(bn(F.conv_transpose2d(h, convt_weight(gp["deconv1"]["kernel"]), stride=2, padding=1), gp["bn1"]))
    for j in range(g_extra):
        h = F.relu(bn(F.conv2d(h, gp[f"extra{j}"]["kernel"].permute(3, 2, 0, 1), padding=1), gp[f"extra_bn{j}"]))
    h = F.conv_transpose2d(h, convt_weight(gp["output"]["kernel"]), gp["output"]["bias"], stride=2, padding=1)
    images = torch.tanh(h)

    x = F.conv2d(images, dp["conv0"]["kernel"].permute(3, 2, 0, 1), dp["conv0"]["bias"], stride=2, padding=1)
    x = F.leaky_relu(x, 0.2)
    for j in range(d_extra):
        x = F.leaky_relu(
            bn(F.conv2d(x, dp[f"extra{j}"]["kernel"].permute(3, 2, 0, 1), padding=1), dp[f"extra_bn{j}"]), 0.2
        )
    x = F.leaky_relu(bn(F.conv2d(x, dp["conv1"]["kernel"].permute(3, 2, 0, 1), stride=2, padding=1), dp["bn1"]), 0.2)
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # flatten in NHWC order, as the JAX model does
    logits = (x @ dp["logit"]["kernel"] + dp["logit"]["bias"])[:, 0]
    loss = (logits * torch.tensor(fake_cotangent, dtype=torch.float64)).sum()
    loss.backward()
    grads = jax.tree_util.tree_map(lambda p: p.grad.numpy(), (gp, dp))
    return images.detach().permute(0, 2, 3, 1).numpy(), logits.detach().numpy(), grads


@pytest.mark.parametrize("g_extra,d_extra", [(0, 0), (2, 1)])
def test_matches_torch_reference_forward_and_gradients(rng, g_extra, d_extra):
    torch = pytest.importorskip("torch")
    gen = DCGANGenerator(image_shape=(28, 28, 1), base_features=BASE, extra_layers=g_extra)
    disc = DCGANDiscriminator(base_features=BASE, extra_layers=d_extra)
    z = rng.normal(size=(5, 6)).astype(np.float32)
    g_vars = _init(gen, z)
    d_vars = _init(disc, np.zeros((5, 28, 28, 1), np.float32))
    perturb = lambda p: p + 0.1 * rng.normal(size=p.shape).astype(np.float32)
    g_params = jax.tree_util.tree_map(perturb, g_vars["params"])
    d_params = jax.tree_util.tree_map(perturb, d_vars["params"])
    w = rng.normal(size=5).astype(np.float32)

    def loss(g_params, d_params):
        images, _ = gen.apply({**g_vars, "params": g_params}, z, train=True, mutable=["batch_stats"])
        logits, _ = disc.apply({**d_vars, "params": d_params}, images, train=True, mutable=["batch_stats"])
        return jnp.sum(logits * w), (images, logits)

    (_, (images, logits)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(g_params, d_params)
    t_images, t_logits, t_grads = _torch_reference(torch, g_params, d_params, z, w, g_extra, d_extra)
    np.testing.assert_allclose(images, t_images, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, t_logits, rtol=1e-4, atol=1e-5)
    flat, flat_ref = jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(t_grads)
    assert len(flat) == len(flat_ref)
    for (path, a), b in zip(flat, flat_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max(), err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("shape", [(30, 30, 1), (28, 32, 1), (16, 16, 3), (128, 128, 3)])
def test_generator_rejects_unsupported_sizes(shape):
    with pytest.raises(ValueError, match=r"28x28, 32x32, 64x64"):
        DCGANGenerator(image_shape=shape)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(image_shape=(28, 28)), r"image_shape must be a tuple \(H, W, C\)"),
        (dict(image_shape=(28, 28, 0)), "channels"),
        (dict(base_features=0), "base_features"),
        (dict(extra_layers=-1), r"extra_layers must be an int >= 0, got -1"),
        (dict(extra_layers=1.5), r"extra_layers must be an int >= 0, got 1.5"),
    ],
)
def test_generator_rejects_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DCGANGenerator(**kwargs)


def test_bad_inputs_raise():
    disc = DCGANDiscriminator(base_features=BASE)
    with pytest.raises(ValueError, match=r"x: DCGAN supports square images of size 28x28, 32x32, 64x64, got 30x30"):
        _init(disc, np.zeros((2, 30, 30, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        _init(disc, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        _init(disc, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="base_features"):
        conv_critic(base_features=-1)
    gen = DCGANGenerator(base_features=BASE)
    with pytest.raises(ValueError, match=r"z must have shape \(N, latent_dim\)"):
        _init(gen, np.zeros((2, 4, 1), np.float32))
