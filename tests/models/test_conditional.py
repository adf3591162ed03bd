"""Class-conditional generators ([z, one_hot(y)] input) and projection discriminators (Miyato & Koyama 2018),
MLP and DCGAN, against float64 numpy forwards and the unconditional networks with the same weights."""

import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.models import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator, conv_critic

C = 4  # classes


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _labels(rng, n):
    return jnp.asarray(rng.integers(0, C, n), jnp.int32)


def _leaky(h):
    return np.where(h > 0, h, 0.2 * h)


def test_mlp_projection_discriminator_matches_numpy(rng):
    disc = MLPDiscriminator(hidden=(6, 5), activation="leaky_relu", num_classes=C)
    x = rng.normal(size=(7, 3, 2)).astype(np.float32)
    y = _labels(rng, 7)
    params = disc.init(jax.random.key(0), jnp.asarray(x), train=False, labels=y)["params"]
    assert params["projection"]["kernel"].shape == (5, C) and "bias" not in params["projection"]
    # random weights everywhere (the projection starts near 0)
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    out = jax.jit(lambda p, x, y: disc.apply({"params": p}, x, labels=y))(params, x, y)

    h = x.reshape(7, -1).astype(np.float64)
    for i in range(2):
        h = _leaky(h @ np.asarray(params[f"dense{i}"]["kernel"], np.float64) + np.asarray(params[f"dense{i}"]["bias"]))
    logit = (h @ np.asarray(params["logit"]["kernel"], np.float64))[:, 0] + np.asarray(params["logit"]["bias"])[0]
    v = np.asarray(params["projection"]["kernel"], np.float64)  # (F, C)
    expected = logit + np.einsum("nf,fn->n", h, v[:, np.asarray(y)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_mlp_conditional_generator_matches_numpy(rng):
    gen = MLPGenerator(out_shape=(3,), hidden=(5,), activation="relu", output="tanh", num_classes=C)
    z = rng.normal(size=(6, 2)).astype(np.float32)
    y = _labels(rng, 6)
    params = gen.init(jax.random.key(0), jnp.asarray(z), train=False, labels=y)["params"]
    assert params["dense0"]["kernel"].shape == (2 + C, 5)
    out = jax.jit(lambda p, z, y: gen.apply({"params": p}, z, labels=y))(params, z, y)
    inputs = np.concatenate([z, np.eye(C)[np.asarray(y)]], axis=1).astype(np.float64)
    h = np.maximum(
        inputs @ np.asarray(params["dense0"]["kernel"], np.float64) + np.asarray(params["dense0"]["bias"]), 0
    )
    expected = np.tanh(h @ np.asarray(params["output"]["kernel"], np.float64) + np.asarray(params["output"]["bias"]))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def _logit_layer_input(module, variables, x):
    """The features h the ``logit`` Dense layer of ``module`` reads on ``x`` (intercepted, not recomputed)."""
    seen = []

    def interceptor(next_fun, args, kwargs, context):
        if context.module.name == "logit" and context.method_name == "__call__":
            seen.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        module.apply(variables, x, train=False)
    assert len(seen) == 1
    return np.asarray(seen[0], np.float64)


def _spectral_normalised(v, u):
    """v / sigma with sigma from one power iteration from u, (F, C) and (C,) (Miyato et al.'s estimate)."""
    w = v @ u
    w /= np.linalg.norm(w)
    u_next = v.T @ w
    u_next /= np.linalg.norm(u_next)
    return v / (w @ v @ u_next)


@pytest.mark.parametrize("extra_layers,spectral_norm", [(0, False), (1, False), (0, True)])
def test_dcgan_projection_discriminator_is_the_unconditional_logit_plus_v_y_dot_features(
    rng, extra_layers, spectral_norm
):
    """D(x, y) = D0(x) + <V[y], h(x)> with D0 the unconditional network on the same weights and h(x) the
    input of D0's logit layer; with spectral normalisation V is divided by its estimated largest singular value."""
    kwargs = dict(base_features=4, extra_layers=extra_layers, spectral_norm=spectral_norm, batch_norm=not spectral_norm)
    cond, plain = DCGANDiscriminator(num_classes=C, **kwargs), DCGANDiscriminator(**kwargs)
    x = jnp.asarray(rng.uniform(-1, 1, size=(5, 28, 28, 1)), jnp.float32)
    y = _labels(rng, 5)
    variables = cond.init(jax.random.key(1), x, train=False, labels=y)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.1 * jnp.asarray(rng.normal(size=p.shape), p.dtype), variables["params"]
    )
    state = {k: v for k, v in variables.items() if k != "params"}
    plain_state = state
    if spectral_norm:  # the projection's power-iteration vector is the only extra state
        assert "sn_projection" in state["batch_stats"]
        plain_state = {"batch_stats": {k: v for k, v in state["batch_stats"].items() if k != "sn_projection"}}
    plain_vars = {"params": {k: v for k, v in params.items() if k != "projection"}, **plain_state}
    assert jax.tree_util.tree_structure(plain_vars["params"]) == jax.tree_util.tree_structure(
        plain.init(jax.random.key(1), x, train=False)["params"]
    )

    got = jax.jit(lambda p, x, y: cond.apply({"params": p, **state}, x, train=False, labels=y))(params, x, y)
    d0 = np.asarray(plain.apply(plain_vars, x, train=False), np.float64)
    h = _logit_layer_input(plain, plain_vars, x)
    v = np.asarray(params["projection"]["kernel"], np.float64)
    if spectral_norm:
        v = _spectral_normalised(
            v, np.asarray(state["batch_stats"]["sn_projection"]["projection/kernel/u"], np.float64)[0]
        )
    expected = d0 + np.einsum("nf,fn->n", h, v[:, np.asarray(y)])
    assert np.abs(expected - d0).max() > 1e-2  # the class term is not negligible here
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)


def test_dcgan_conditional_generator_is_the_unconditional_one_on_z_and_one_hot(rng):
    cond = DCGANGenerator(base_features=4, extra_layers=1, num_classes=C)
    plain = DCGANGenerator(base_features=4, extra_layers=1)
    z = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
    y = _labels(rng, 6)
    variables = cond.init(jax.random.key(2), z, train=False, labels=y)
    assert variables["params"]["project"]["kernel"].shape[0] == 8 + C
    variables = {
        **variables,
        "params": jax.tree_util.tree_map(
            lambda p: p + 0.05 * jnp.asarray(rng.normal(size=p.shape), p.dtype), variables["params"]
        ),
    }
    got, stats = cond.apply(variables, z, train=True, labels=y, mutable=["batch_stats"])
    z_one_hot = jnp.concatenate([z, jax.nn.one_hot(y, C)], axis=1)
    expected, expected_stats = plain.apply(variables, z_one_hot, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), stats, expected_stats)
    # the label changes the sample
    other = cond.apply(variables, z, train=False, labels=(y + 1) % C)
    assert np.abs(np.asarray(other) - np.asarray(cond.apply(variables, z, train=False, labels=y))).max() > 1e-3


def test_conv_critic_is_a_projection_critic_with_num_classes(rng):
    critic = conv_critic(base_features=4, num_classes=C)
    x = jnp.asarray(rng.uniform(-1, 1, size=(3, 28, 28, 1)), jnp.float32)
    variables = critic.init(jax.random.key(0), x, train=False, labels=_labels(rng, 3))
    assert set(variables) == {"params"} and variables["params"]["projection"]["kernel"].shape == (7 * 7 * 8, C)
    scores = [critic.apply(variables, x, train=False, labels=jnp.full((3,), c, jnp.int32)) for c in range(C)]
    assert np.ptp(np.stack(scores), axis=0).min() > 0  # each sample's score depends on its label


@pytest.mark.parametrize(
    "module,x",
    [
        (MLPGenerator(out_shape=(2,), hidden=(4,), num_classes=C), np.zeros((3, 2), np.float32)),
        (MLPDiscriminator(hidden=(4,), num_classes=C), np.zeros((3, 2), np.float32)),
        (DCGANGenerator(base_features=4, num_classes=C), np.zeros((3, 8), np.float32)),
        (DCGANDiscriminator(base_features=4, num_classes=C), np.zeros((3, 28, 28, 1), np.float32)),
    ],
)
def test_label_errors(module, x):
    init = lambda **kw: module.init(jax.random.key(0), jnp.asarray(x), train=False, **kw)
    with pytest.raises(ValueError, match=rf"class-conditional \(num_classes={C}\): pass labels"):
        init()
    with pytest.raises(
        ValueError, match=r"labels must be an \(3,\) int array of classes in \[0, 4\), got shape \(2,\)"
    ):
        init(labels=jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"got shape \(3,\) and dtype float32"):
        init(labels=jnp.zeros((3,), jnp.float32))
    unconditional = module.clone(num_classes=0)
    with pytest.raises(ValueError, match=r"is unconditional \(num_classes=0\) and takes no labels"):
        unconditional.init(jax.random.key(0), jnp.asarray(x), train=False, labels=jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLPGenerator(out_shape=(2,), num_classes=-1),
        lambda: MLPDiscriminator(num_classes=1.5),
        lambda: DCGANGenerator(num_classes=-2),
        lambda: DCGANDiscriminator(num_classes=True),
    ],
)
def test_bad_num_classes_raises(make):
    with pytest.raises(ValueError, match="num_classes must be an int >= 0"):
        make()
