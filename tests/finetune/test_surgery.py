"""Freezing, discriminative learning rates, linear probe / full switch, head surgery, backbone loading."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gendl_jax import finetune as ft
from gendl_jax.models import resnet

X_SHAPE = (4, 16, 16, 3)


@pytest.fixture(scope="module")
def tiny():
    model = resnet.ResNet((1, 1, 1, 1), "basic", num_classes=5)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros(X_SHAPE))
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=X_SHAPE).astype(np.float32), "y": rng.integers(0, 5, size=4)}
    return model, variables, batch


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_frozen_subtrees_and_their_batch_norm_statistics_do_not_move(tiny):
    model, variables, batch = tiny
    frozen = ("conv1", "bn1", "layer1", "layer2/0/conv1")
    opt = ft.finetune_optimizer(variables["params"], 1e-2, frozen=frozen)
    step = jax.jit(ft.make_step(ft.freeze_batch_norm(model, frozen), opt))
    state = ft.init_finetune(variables, opt)
    for _ in range(2):
        state, metrics = step(state, batch)
    assert np.isfinite(metrics["loss"])
    p0, p1 = variables["params"], state.params
    for name in ("conv1", "bn1", "layer1"):
        assert _leaves_equal(p0[name], p1[name]), name
    assert _leaves_equal(p0["layer2"]["0"]["conv1"], p1["layer2"]["0"]["conv1"])
    for name in ("layer3", "fc"):
        assert not _leaves_equal(p0[name], p1[name]), name
    assert not _leaves_equal(p0["layer2"]["0"]["conv2"], p1["layer2"]["0"]["conv2"])
    s0, s1 = variables["batch_stats"], state.batch_stats
    assert _leaves_equal(s0["bn1"], s1["bn1"]) and _leaves_equal(s0["layer1"], s1["layer1"])
    # layer2 is only partly frozen (one convolution): its BatchNorm statistics keep updating.
    assert not _leaves_equal(s0["layer2"], s1["layer2"]) and not _leaves_equal(s0["layer3"], s1["layer3"])
    # Frozen leaves hold no Adam moments (set_to_zero is stateless); the layer-3 kernel does.
    assert optax.tree_utils.tree_get(state.opt_state, "mu") is not None


def test_discriminative_learning_rates_scale_the_sgd_update(tiny):
    model, variables, batch = tiny
    lrs = {"layer1": 1e-3, "layer4": 3e-2, "layer4/0/conv2": 0.5}
    opt = ft.finetune_optimizer(
        variables["params"], 0.1, stage_learning_rates=lrs, frozen=("bn1",), optimizer=optax.sgd
    )
    step = jax.jit(ft.make_step(model, opt))
    state, _ = step(ft.init_finetune(variables, opt), batch)

    def loss(params):  # independent: plain jax.grad of the same objective
        logits, _ = model.apply({**variables, "params": params}, batch["x"], train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])
    p0, p1 = variables["params"], state.params

    def check(path, lr):
        a, b, g = p0, p1, grads
        for k in path:
            a, b, g = a[k], b[k], g[k]
        for x0, x1, gx in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), jax.tree_util.tree_leaves(g)):
            np.testing.assert_allclose(x1, x0 - lr * gx, rtol=1e-4, atol=1e-6)

    check(("layer1",), 1e-3)
    check(("layer4", "0", "conv1"), 3e-2)
    check(("layer4", "0", "conv2"), 0.5)  # the longest name wins
    check(("layer2",), 0.1)
    check(("fc",), 0.1)
    check(("bn1",), 0.0)  # frozen


def test_linear_probe_trains_only_the_head(tiny):
    model, variables, batch = tiny
    frozen = ft.frozen_for_mode(variables["params"], "linear_probe")
    assert set(frozen) == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
    assert ft.frozen_for_mode(variables["params"], "full") == ()
    opt = ft.finetune_optimizer(variables["params"], 1e-2, frozen=frozen)
    state, _ = jax.jit(ft.make_step(ft.freeze_batch_norm(model, frozen), opt))(ft.init_finetune(variables, opt), batch)
    changed = {k for k in variables["params"] if not _leaves_equal(variables["params"][k], state.params[k])}
    assert changed == {"fc"}
    assert _leaves_equal(variables["batch_stats"], state.batch_stats)
    with pytest.raises(ValueError, match="mode must be one of"):
        ft.frozen_for_mode(variables["params"], "probe")


def test_unknown_names_are_listed(tiny):
    _, variables, _ = tiny
    with pytest.raises(
        ValueError,
        match=r"frozen has unknown sub-tree names \['layer7'\]; valid top-level names: \['bn1', 'conv1', 'fc', 'layer1'",
    ):
        ft.finetune_optimizer(variables["params"], 1e-3, frozen=("layer7",))
    with pytest.raises(ValueError, match="stage_learning_rates"):
        ft.finetune_optimizer(variables["params"], 1e-3, stage_learning_rates={"layer1": -1.0})
    with pytest.raises(TypeError, match="sequence of sub-tree names"):
        ft.finetune_optimizer(variables["params"], 1e-3, frozen="layer1")


def test_replace_head_keeps_the_backbone(tiny):
    model, variables, _batch = tiny
    new_model, new_vars = ft.replace_head(model, variables, jax.random.PRNGKey(3), 2, jnp.zeros(X_SHAPE))
    assert new_model.num_classes == 2
    assert new_vars["params"]["fc"]["kernel"].shape == (512, 2)
    assert _leaves_equal(
        {k: v for k, v in new_vars["params"].items() if k != "fc"},
        {k: v for k, v in variables["params"].items() if k != "fc"},
    )
    assert _leaves_equal(new_vars["batch_stats"], variables["batch_stats"])
    with pytest.raises(ValueError, match="head has unknown sub-tree names"):
        ft.replace_head(model, variables, jax.random.PRNGKey(3), 2, jnp.zeros(X_SHAPE), head="classifier")


def test_load_backbone_from_orbax_checkpoint(tiny, tmp_path):
    _model, variables, _ = tiny
    ft.save_backbone(tmp_path / "ckpt", variables)
    other = jax.tree_util.tree_map(jnp.zeros_like, variables)
    other["params"]["fc"] = {"kernel": jnp.ones((512, 3)), "bias": jnp.ones((3,))}
    loaded = ft.load_backbone(tmp_path / "ckpt", other, exclude=("fc",))
    assert _leaves_equal(loaded["params"]["layer2"], variables["params"]["layer2"])
    assert _leaves_equal(loaded["batch_stats"], variables["batch_stats"])
    assert _leaves_equal(loaded["params"]["fc"], other["params"]["fc"])
    with pytest.raises(ValueError, match="fc: shapes differ"):
        ft.load_backbone(tmp_path / "ckpt", other, exclude=())
