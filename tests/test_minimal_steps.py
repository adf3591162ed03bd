"""benchmarks/minimal_steps.py, the plain versions of the adversarial steps that benchmarks/train_steps.py times
beside the library's: from the same state, one step of each gives the same parameters, optimiser moments and key
(so the "minimal" column times the same mathematics), for every objective on MLPs, and GAN / WGAN-GP on DCGANs (small widths), under
jax.jit, on fresh random data."""

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gendl_jax.objectives import gan, get_objective, wgan, wgan_gp, wgan_sn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import minimal_steps

CONFIGS = {
    "gan": gan.GANConfig(),
    "wgan": wgan.WGANConfig(),
    "wgan-gp": wgan_gp.WGANGPConfig(gp_weight=10.0),
    "wgan-sn": wgan_sn.WGANSNConfig(),
}


CASES = [(label, "mlp") for label in sorted(CONFIGS)] + [("gan", "dcgan"), ("wgan-gp", "dcgan")]  # BatchNorm in D; GP


@pytest.mark.parametrize(("label", "model"), CASES)
def test_one_step_equals_the_library_step(label, model):
    rng = np.random.default_rng()
    config = dataclasses.replace(CONFIGS[label], model=model, hidden=(32, 24), base_features=8)
    if model == "mlp":
        data_shape, m = (2,), 16
    else:
        data_shape, m = (28, 28, 1), 8
    x = np.tanh(rng.normal(size=(config.inner_steps, m, *data_shape))).astype(np.float32)
    obj = get_objective(label)
    state = obj.init(jax.random.PRNGKey(int(rng.integers(2**31))), config, {"x": x})
    library_state, metrics = jax.jit(obj.step)(state, {"x": x})
    minimal_state, (d_loss, g_loss) = jax.jit(minimal_steps.make_step(label, config, data_shape))(
        minimal_steps.from_library_state(state), x
    )
    want = minimal_steps.from_library_state(library_state)
    assert jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(minimal_state)
    # The optimiser moments are sums of (squared) gradients: equal to float32 rounding, relative to their scale. The
    # parameters: Adam / RMSprop divide by the gradients' scale, so a component whose gradient is ~0 (its sign set by
    # rounding: the library takes the penalty's input gradients per sample, vmap(grad)) can move by up to
    # a learning rate per update either way; beyond that bound they must agree.
    lr = max(config.g_learning_rate, config.d_learning_rate)
    leaves = [(jax.tree_util.keystr(p), np.asarray(a)) for p, a in jax.tree_util.tree_leaves_with_path(want)]
    moment = lambda name: name.split("['", 2)[1] if ".mu" in name or ".nu" in name else name  # e.g. "d_opt'][0].nu"
    scale = {}
    for name, a in leaves:
        scale[moment(name)] = max(scale.get(moment(name), 0.0), float(np.abs(a).max()))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree_util.tree_leaves(minimal_state)):
        a, b, name = np.asarray(a), np.asarray(b), jax.tree_util.keystr(path)
        if name.startswith(("['g_opt']", "['d_opt']")):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * scale[moment(name)], err_msg=name)
        elif name.startswith(("['g']", "['d']")):
            np.testing.assert_allclose(b, a, rtol=0, atol=2.1 * config.inner_steps * lr, err_msg=name)
        else:
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
    # The last critic update's loss is the library's d_loss only when k = 1 (the library reports the mean).
    if config.inner_steps == 1:
        np.testing.assert_allclose(float(d_loss), float(metrics["d_loss"]), rtol=1e-5, atol=1e-6)
    # The generator's loss is taken at the critic after the k updates, whose parameters agree within the bound above.
    np.testing.assert_allclose(float(g_loss), float(metrics["g_loss"]), rtol=1e-3, atol=1e-4)
    # A step changes the parameters (the comparison above is not between two untouched copies).
    assert not np.allclose(
        np.asarray(jax.tree_util.tree_leaves(want["d"])[0]), jax.tree_util.tree_leaves(state.discriminator.params)[0]
    )


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="label must be one of"):
        minimal_steps.make_step("lsgan", gan.GANConfig(), (2,))
