"""Reconstruction error by latent recovery: ``min_z |G(z) - x|^2`` for each target x (Borji's table, after
Xiang & Li 2017; Webster et al. 2019 compare training and held-out targets to detect memorisation).

For each target the latent is found by Adam on ``|G(z) - x|^2`` from ``n_restarts`` N(0, I) starts, the
learning rate decayed to 0 by a cosine schedule so that the last iterates settle; the best restart
counts. The search is unconstrained, so the recovered latents may leave the prior's typical set:
their norms are returned alongside (about sqrt(latent_dim) under the prior).

``generate`` must treat the rows of its batch independently (a generator in inference mode, e.g.
``lambda z: adversarial.generate(state, z)``): one jitted ``lax.scan`` optimises all targets and
restarts at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from gendl_jax.metrics.common import positive_int

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("generate", "n_steps"))
def _recover(generate: Callable[[Array], Array], targets: Array, z0: Array, n_steps: int, learning_rate: float):
    """targets (n, *shape), z0 (r, n, k) -> per-restart squared errors (r, n) and final latents (r, n, k)."""
    r, n, k = z0.shape
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, n_steps))
    tiled = jnp.broadcast_to(targets, (r,) + targets.shape).reshape((r * n,) + targets.shape[1:])

    def errors(z):  # (r * n, k) -> (r * n,)
        diff = (generate(z) - tiled).reshape(r * n, -1)
        return jnp.sum(diff * diff, axis=1)

    def step(carry, _):
        z, opt_state = carry
        grads = jax.grad(lambda v: jnp.sum(errors(v)))(z)  # rows independent: each z gets its own gradient
        updates, opt_state = tx.update(grads, opt_state, z)
        return (optax.apply_updates(z, updates), opt_state), None

    z = z0.reshape(r * n, k)
    (z, _), _ = lax.scan(step, (z, tx.init(z)), None, length=n_steps)
    return errors(z).reshape(r, n), z.reshape(r, n, k)


def latent_reconstruction(
    generate: Callable[[Array], Array],
    targets,
    *,
    key: Array,
    latent_dim: int,
    n_steps: int = 500,
    learning_rate: float = 0.05,
    n_restarts: int = 4,
) -> dict:
    """The squared distance from each target to the generator's range, ``min_z |G(z) - x|^2``.

    Args:
      generate: ``(m, latent_dim) -> (m, *target_shape)``, rows independent; hashable (it is a static
        argument of the jitted search: pass the same function object to reuse the compilation).
      targets: (n, *target_shape), in the generator's output range.
      key: PRNG key of the starting latents.
      latent_dim: the generator's latent dimension.
      n_steps: Adam steps; learning_rate: their initial rate (cosine-decayed to 0); n_restarts: starts per target.

    Returns a dict of numpy arrays and floats: ``errors`` (n,) the best squared L2 distance, ``mean_error``,
    ``latents`` (n, latent_dim) the best restart's latent, ``latent_norms`` (n,), ``restart_errors``
    (n_restarts, n).
    """
    targets = jnp.asarray(targets)
    if targets.ndim < 2 or targets.shape[0] < 1:
        raise ValueError(f"targets must have shape (n, *target_shape) with n >= 1, got {targets.shape}")
    if not bool(jnp.all(jnp.isfinite(targets))):
        raise ValueError("targets contains NaN or inf")
    latent_dim = positive_int(latent_dim, "latent_dim")
    n_steps = positive_int(n_steps, "n_steps")
    n_restarts = positive_int(n_restarts, "n_restarts")
    if (
        not isinstance(learning_rate, (int, float))
        or isinstance(learning_rate, bool)
        or not (np.isfinite(learning_rate) and learning_rate > 0)
    ):
        raise ValueError(f"learning_rate must be a positive finite float, got {learning_rate!r}")
    out_shape = jax.eval_shape(generate, jax.ShapeDtypeStruct((1, latent_dim), jnp.float32)).shape
    if out_shape[1:] != targets.shape[1:]:
        raise ValueError(f"generate maps latents to shape {out_shape[1:]} but targets have shape {targets.shape[1:]}")
    z0 = jax.random.normal(key, (n_restarts, targets.shape[0], latent_dim), jnp.float32)
    restart_errors, latents = _recover(generate, targets, z0, n_steps, float(learning_rate))
    restart_errors, latents = np.asarray(restart_errors), np.asarray(latents)
    best = np.argmin(restart_errors, axis=0)
    columns = np.arange(targets.shape[0])
    errors, chosen = restart_errors[best, columns], latents[best, columns]
    return {
        "errors": errors,
        "mean_error": float(errors.mean()),
        "latents": chosen,
        "latent_norms": np.linalg.norm(chosen, axis=1),
        "restart_errors": restart_errors,
    }
