"""MLPGenerator / MLPDiscriminator: shapes, ranges, BatchNorm behaviour and a numpy forward reference."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gendl_jax.models import MLPDiscriminator, MLPGenerator


@pytest.fixture
def rng(request):
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def _init(module, x, **kwargs):
    return module.init(jax.random.key(0), jnp.asarray(x), train=False, **kwargs)


@pytest.mark.parametrize("out_shape", [(2,), (28, 28, 1), (3, 5)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_generator_output_shape(rng, out_shape, batch_norm):
    gen = MLPGenerator(out_shape=out_shape, hidden=(16, 8), batch_norm=batch_norm)
    z = rng.normal(size=(5, 3)).astype(np.float32)
    variables = jax.eval_shape(lambda: _init(gen, z))
    y = jax.eval_shape(lambda v, z: gen.apply(v, z, train=True, mutable=["batch_stats"])[0], variables, z)
    assert y.shape == (5, *out_shape) and y.dtype == jnp.float32


@pytest.mark.parametrize("output,low,high", [("tanh", -1.0, 1.0), ("sigmoid", 0.0, 1.0)])
def test_generator_output_range(rng, output, low, high):
    gen = MLPGenerator(out_shape=(4, 4, 1), hidden=(32,), output=output)
    z = 50.0 * rng.normal(size=(64, 8)).astype(np.float32)  # large inputs saturate the output map
    y = np.asarray(jax.jit(lambda v, z: gen.apply(v, z, train=False))(_init(gen, z), z))
    assert y.min() >= low and y.max() <= high
    assert y.min() < low + 0.1 and y.max() > high - 0.1  # the range is used, not just respected
    linear = MLPGenerator(out_shape=(4, 4, 1), hidden=(32,), output="linear")
    y_lin = np.asarray(linear.apply(_init(linear, z), z, train=False))
    assert np.abs(y_lin).max() > 1.0


def test_generator_matches_numpy_forward(rng):
    gen = MLPGenerator(out_shape=(2, 3), hidden=(7, 5), activation="leaky_relu", output="tanh")
    z = rng.normal(size=(4, 3)).astype(np.float32)
    params = _init(gen, z)["params"]
    y = jax.jit(lambda p, z: gen.apply({"params": p}, z))(params, z)
    h = z.astype(np.float64)
    for name in ("dense0", "dense1"):
        h = h @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(params[name]["bias"])
        h = np.where(h > 0, h, 0.2 * h)
    h = np.tanh(h @ np.asarray(params["output"]["kernel"], np.float64) + np.asarray(params["output"]["bias"]))
    np.testing.assert_allclose(y, h.reshape(4, 2, 3), rtol=1e-5, atol=1e-6)


def test_generator_batch_norm_placement_and_statistics(rng):
    gen = MLPGenerator(out_shape=(2,), hidden=(16, 8), batch_norm=True)
    z = rng.normal(size=(32, 4)).astype(np.float32)
    variables = _init(gen, z)
    assert set(variables["batch_stats"]) == {"bn0", "bn1"}  # after hidden layers, none after the output
    assert "bias" not in variables["params"]["dense0"]  # BatchNorm's bias replaces it
    assert "bias" in variables["params"]["output"]
    assert set(_init(MLPGenerator(out_shape=(2,), hidden=(16, 8)), z)) == {"params"}

    _, updated = jax.jit(lambda v, z: gen.apply(v, z, train=True, mutable=["batch_stats"]))(variables, z)
    pre = z.astype(np.float64) @ np.asarray(variables["params"]["dense0"]["kernel"], np.float64)
    np.testing.assert_allclose(updated["batch_stats"]["bn0"]["mean"], 0.1 * pre.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(updated["batch_stats"]["bn0"]["var"], 0.9 + 0.1 * pre.var(0), rtol=1e-4)


def _other_members_matter(module, variables, x, train, **kwargs):
    """Whether changing the rest of the batch changes the output of the first sample."""
    x2 = x.copy()
    x2[1:] = 3.0 * x2[1:] + 1.0
    f = jax.jit(lambda v, x: module.apply(v, x, train=train, mutable=["batch_stats"], **kwargs)[0])
    return not np.allclose(f(variables, x)[0], f(variables, x2)[0], rtol=1e-6, atol=1e-6)


def test_generator_train_false_uses_running_averages(rng):
    gen = MLPGenerator(out_shape=(3,), hidden=(16,), batch_norm=True)
    z = rng.normal(size=(8, 4)).astype(np.float32)
    variables = _init(gen, z)
    assert _other_members_matter(gen, variables, z, train=True)
    assert not _other_members_matter(gen, variables, z, train=False)


@pytest.mark.parametrize("activation", ["maxout", "relu", "leaky_relu"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_discriminator_matches_numpy_forward(rng, activation, layer_norm):
    disc = MLPDiscriminator(hidden=(6, 5), activation=activation, maxout_pieces=3, layer_norm=layer_norm)
    x = rng.normal(size=(4, 2, 3, 1)).astype(np.float32)
    variables = _init(disc, x)
    assert set(variables) == {"params"}  # no BatchNorm: each output depends on its own sample only
    # random LayerNorm scales / biases so that they are checked too
    params = jax.tree_util.tree_map(
        lambda p: p + 0.3 * rng.normal(size=p.shape).astype(np.float32), variables["params"]
    )
    y = jax.jit(lambda p, x: disc.apply({"params": p}, x))(params, x)
    assert y.shape == (4,)

    h = x.reshape(4, -1).astype(np.float64)
    for i, width in enumerate((6, 5)):
        layer = params[f"maxout{i}"]["dense"] if activation == "maxout" else params[f"dense{i}"]
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"])
        if activation == "maxout":
            h = h.reshape(4, width, 3).max(-1)
        if layer_norm:
            ln = params[f"ln{i}"]
            h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
            h = h * np.asarray(ln["scale"]) + np.asarray(ln["bias"])
        if activation == "relu":
            h = np.maximum(h, 0)
        elif activation == "leaky_relu":
            h = np.where(h > 0, h, 0.2 * h)
    logit = h @ np.asarray(params["logit"]["kernel"], np.float64) + np.asarray(params["logit"]["bias"])
    np.testing.assert_allclose(y, logit[:, 0], rtol=1e-4, atol=1e-5)


def test_discriminator_dropout_needs_rng_only_when_training(rng):
    disc = MLPDiscriminator(hidden=(64,), activation="relu", dropout=0.5)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    variables = _init(disc, x)
    y_eval = disc.apply(variables, x, train=False)
    np.testing.assert_allclose(y_eval, MLPDiscriminator(hidden=(64,), activation="relu").apply(variables, x), rtol=1e-6)
    with pytest.raises(Exception, match="dropout"):
        disc.apply(variables, x, train=True)
    y1 = disc.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    y2 = disc.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(y1, y2)
    # no dropout: train=True needs no rng
    plain = MLPDiscriminator(hidden=(64,), activation="relu")
    np.testing.assert_allclose(plain.apply(variables, x, train=True), y_eval, rtol=1e-6)


def test_discriminator_gradient_penalty_is_per_sample(rng):
    """The WGAN-GP use: per-sample input gradients under vmap(grad), differentiated w.r.t. params."""
    critic = MLPDiscriminator(hidden=(16, 16), activation="relu", layer_norm=True)
    x = rng.normal(size=(6, 2)).astype(np.float32)
    params = _init(critic, x)["params"]

    def penalty(p):
        grad_x = jax.vmap(jax.grad(lambda xi: critic.apply({"params": p}, xi[None])[0]))(x)
        return jnp.mean((jnp.linalg.norm(grad_x, axis=-1) - 1.0) ** 2)

    g = jax.jit(jax.grad(penalty))(params)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(g))
    batched = jax.jit(jax.grad(lambda x: jnp.sum(critic.apply({"params": params}, x))))(x)
    one = jax.jit(jax.grad(lambda xi: critic.apply({"params": params}, xi[None])[0]))(x[0])
    np.testing.assert_allclose(batched[0], one, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MLPGenerator(out_shape=(2,), activation="swish"), "activation must be one of"),
        (lambda: MLPGenerator(out_shape=(2,), output="softmax"), "output must be one of"),
        (lambda: MLPGenerator(out_shape=()), "out_shape"),
        (lambda: MLPGenerator(out_shape=(0, 2)), "out_shape"),
        (lambda: MLPGenerator(out_shape=(2,), hidden=[16]), "hidden"),
        (lambda: MLPDiscriminator(activation="swish"), "maxout"),
        (lambda: MLPDiscriminator(dropout=1.0), "dropout"),
        (lambda: MLPDiscriminator(maxout_pieces=0), "maxout_pieces"),
    ],
)
def test_bad_configuration_raises(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_raise():
    gen = MLPGenerator(out_shape=(2,), hidden=(4,))
    with pytest.raises(ValueError, match=r"z must have shape \(N, latent_dim\)"):
        _init(gen, np.zeros((3,), np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        _init(gen, np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match="x must have shape"):
        _init(MLPDiscriminator(hidden=(4,)), np.zeros((3,), np.float32))
