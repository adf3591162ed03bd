"""The same step under ``pmap`` with an ``axis_name`` on 4 simulated CPU devices reproduces one device
on the same global batch (gradients, BatchNorm statistics and random draws are global)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import functools
    import jax, jax.numpy as jnp, numpy as np
    from gendl_jax.objectives import gan, get_objective, wgan

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    cases = [
        ("gan", gan.GANConfig(hidden=(16, 16), latent_dim=3, g_batch_norm=True, d_steps=2), (2,)),
        ("wgan-gp", wgan.WGANGPConfig(hidden=(16, 16), latent_dim=3, n_critic=2), (2,)),
        ("gan", gan.GANConfig(model="dcgan", base_features=4, latent_dim=8), (28, 28, 1)),
    ]
    for name, config, shape in cases:
        obj = get_objective(name)
        k, m = config.inner_steps, 16
        batches = [rng.normal(size=(k, m, *shape)).astype(np.float32) for _ in range(3)]
        single = obj.init(jax.random.PRNGKey(1), config, {"x": batches[0]})
        replicated = jax.tree_util.tree_map(lambda leaf: jnp.stack([leaf] * 4), single)
        step = jax.jit(obj.step)
        pstep = jax.pmap(functools.partial(obj.step, axis_name="data"), axis_name="data")
        for x in batches:
            single, metrics = step(single, {"x": x})
            # device d gets rows d*m/4 .. (d+1)*m/4 of every inner minibatch
            local = np.stack(np.split(x, 4, axis=1))
            replicated, pmetrics = pstep(replicated, {"x": local})
        for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(replicated)):
            b = np.asarray(b)
            for d in range(4):
                np.testing.assert_allclose(b[d], np.asarray(a), rtol=2e-4, atol=2e-5)
        for key in metrics:
            np.testing.assert_allclose(np.asarray(pmetrics[key])[0], metrics[key], rtol=2e-4, atol=2e-5)
        print("ok", name, shape)
    """
)


def test_pmap_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok") == 3
