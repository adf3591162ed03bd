"""The benchmarked adversarial train steps written plainly: the same networks (the library's Flax modules), losses,
optimisers, updates and random draws as :func:`gendl_jax.objectives.adversarial.adversarial_step`, with nothing else
(the toy cases' MLPs written here as plain ``nn.Dense`` stacks; the DCGAN networks and the spectrally normalised
critic are the library's modules, whose convolutions are the fast custom-derivative layers measured in
``benchmarks/conv_transpose.py``; no metrics beyond the two losses, no hyper-parameters in the state, no options, no device averaging, plain
``optax.adam`` / ``optax.rmsprop`` at a fixed learning rate, the gradient penalty as the gradient of the critic's
batch sum). ``benchmarks/train_steps.py`` times it beside the library's step ("minimal" column); the library's step
should cost no more than 10% on top of it.

The state is a plain dict built from a library state (:func:`from_library_state`), so that both start from the same
parameters, optimiser moments and key, and ``tests/test_benchmarks.py`` checks that one step of each gives the same
parameters: the column times the same mathematics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gendl_jax.objectives import adversarial

LABELS = ("gan", "wgan", "wgan-gp", "wgan-sn")


class PlainMLP(nn.Module):
    """``Dense -> ReLU`` per hidden width, then ``Dense(out)``: the toy cases' generator (``out`` = 2, final layer
    ``output``) and critic (``out`` = 1, ``logit``, squeezed), with the library modules' parameter names."""

    hidden: tuple[int, ...]
    out: int
    last: str

    @nn.compact
    def __call__(self, x, train=True):
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.relu(nn.Dense(width, name=f"dense{i}")(h))
        h = nn.Dense(self.out, name=self.last)(h)
        return h[:, 0] if self.last == "logit" else h


def from_library_state(state: adversarial.AdversarialState) -> dict:
    """The minimal step's state: the library state's networks, optimiser states and key as a plain dict."""
    g, d = state.generator, state.discriminator
    return {
        "g": g.params,
        "g_stats": g.batch_stats,
        "g_opt": g.opt_state,
        "d": d.params,
        "d_stats": d.batch_stats,
        "d_opt": d.opt_state,
        "key": state.key,
    }


def make_step(label: str, config, data_shape: tuple[int, ...]):
    """``step(state, real) -> (state, (d_loss, g_loss))`` for ``label`` in :data:`LABELS`; ``real`` is the
    ``(inner_steps, m, *data_shape)`` array of ``batch["x"]``. Not jitted (the caller jits it)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    gen, disc = adversarial.build_networks(config, data_shape, batch_norm_in_d=label == "gan")
    plain_mlp = (
        len(data_shape) == 1 and not config.spectral_norm and config.d_activation == "relu" and not config.g_batch_norm
    )
    if plain_mlp:  # written here; the DCGAN and spectrally normalised networks are the library's modules
        gen = PlainMLP(config.hidden, data_shape[0], "output")
        disc = PlainMLP(config.hidden, 1, "logit")
    z_dim = adversarial.latent_dim(config, data_shape)
    k = config.inner_steps
    if config.optimizer == "adam":
        g_tx = optax.adam(config.g_learning_rate, b1=config.beta1, b2=config.beta2)
        d_tx = optax.adam(config.d_learning_rate, b1=config.beta1, b2=config.beta2)
    else:
        g_tx = optax.rmsprop(config.g_learning_rate, decay=0.99, eps=1e-8)
        d_tx = optax.rmsprop(config.d_learning_rate, decay=0.99, eps=1e-8)
    gp_weight = getattr(config, "gp_weight", None)
    if label == "wgan-gp" and gp_weight is None:
        gp_weight = 0.1 if len(data_shape) == 1 else 10.0

    def run(module, params, stats, x, train):
        if not stats:
            return module.apply({"params": params}, x, train=train), stats
        if not train:
            return module.apply({"params": params, "batch_stats": stats}, x, train=False), stats
        out, mutated = module.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
        return out, mutated["batch_stats"]

    def d_loss_fn(params, stats, real, fake, eps):
        s_real, stats = run(disc, params, stats, real, True)
        s_fake, stats = run(disc, params, stats, fake, True)
        if label == "gan":
            loss = jnp.mean(jax.nn.softplus(-s_real)) + jnp.mean(jax.nn.softplus(s_fake))
        else:
            loss = jnp.mean(s_fake) - jnp.mean(s_real)
        if label == "wgan-gp":
            e = eps.reshape((-1,) + (1,) * len(data_shape))
            x_hat = e * real + (1.0 - e) * fake
            grads = jax.grad(lambda x: jnp.sum(run(disc, params, stats, x, False)[0]))(x_hat)
            norms = jnp.sqrt(jnp.sum(jnp.square(grads).reshape(grads.shape[0], -1), axis=1))
            loss = loss + gp_weight * jnp.mean(jnp.square(norms - 1.0))
        return loss, stats

    def g_loss_fn(params, stats, d_params, d_stats, z):
        fake, stats = run(gen, params, stats, z, True)
        s_fake, _ = run(disc, d_params, d_stats, fake, True)
        loss = jnp.mean(jax.nn.softplus(-s_fake)) if label == "gan" else -jnp.mean(s_fake)
        return loss, stats

    def step(state, real):
        m = real.shape[1]
        key, d_key, g_key = jax.random.split(state["key"], 3)
        d, d_stats, d_opt = state["d"], state["d_stats"], state["d_opt"]
        for i, step_key in enumerate(jax.random.split(d_key, k)):
            z_key, p_key = jax.random.split(step_key)
            fake, _ = run(gen, state["g"], state["g_stats"], jax.random.normal(z_key, (m, z_dim)), True)
            eps = jax.random.uniform(p_key, (m,))
            (d_loss, d_stats), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d, d_stats, real[i], jax.lax.stop_gradient(fake), eps
            )
            updates, d_opt = d_tx.update(grads, d_opt, d)
            d = optax.apply_updates(d, updates)
            if label == "wgan":
                d = jax.tree_util.tree_map(lambda p: jnp.clip(p, -config.clip, config.clip), d)
        z = jax.random.normal(g_key, (m, z_dim))
        (g_loss, g_stats), grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            state["g"], state["g_stats"], d, d_stats, z
        )
        updates, g_opt = g_tx.update(grads, state["g_opt"], state["g"])
        new = {
            "g": optax.apply_updates(state["g"], updates),
            "g_stats": g_stats,
            "g_opt": g_opt,
            "d": d,
            "d_stats": d_stats,
            "d_opt": d_opt,
            "key": key,
        }
        return new, (d_loss, g_loss)

    return step
