"""Penalties on the input gradient of any discriminator or critic, and lazy regularisation.

Every penalty has the signature of :func:`gendl_jax.objectives.adversarial.adversarial_step`'s ``penalty`` hook,
``penalty(critic, real, fake, eps[, labels=]) -> (value, metrics)``, where ``critic(x[, labels=])`` scores
(n, *data_shape) -> (n,) and ``eps`` (m,) are the step's U(0, 1) interpolation weights; the step adds
``weight * value`` to the discriminator's loss. :func:`configured` builds the ones a
:class:`~gendl_jax.objectives.adversarial.NetworkConfig` asks for (``r1_weight``, ``r2_weight``, ``dragan_weight``);
``penalty_every`` (:func:`lazy`) applies to all the penalties of a step, the objective's own included.

* R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?", eq. 9):
  ``(gamma / 2) E_{x ~ P_r} ||grad_x D(x)||^2``, at the real minibatch; D is the discriminator's output before any
  loss (a GAN's logit, a critic's score). The lecture's "gradient penalty at x ~ P_r".
* R2 (same paper): the same at the fakes, ``(gamma / 2) E_{x ~ P_g} ||grad_x D(x)||^2``.
* DRAGAN (Kodali et al. 2017, "On convergence and stability of GANs"): ``lambda E (||grad D(x_hat)|| - 1)^2`` at
  points near the data. The perturbation is the one of the authors' reference implementation
  (github.com/kodalinaveen3/DRAGAN, ``get_perturbed_batch`` and the interpolation that follows it):
  ``x_p = x + 0.5 * std(x) * u`` with ``u ~ U(0, 1)`` drawn per element and ``std`` the standard deviation (ddof 0)
  of all the elements of the real minibatch, then ``x_hat = x + alpha (x_p - x)`` with ``alpha ~ U(0, 1)`` per
  sample; i.e. ``x_hat = x + alpha * 0.5 * std(x) * u``.
* Lazy regularisation (Karras et al. 2020, "Analyzing and improving the image quality of StyleGAN", section 4.3 and
  appendix B): the penalties are computed only on every k-th discriminator update (counted over the whole run:
  update ``t`` is regularised when ``t % k == 0``, the first one included) and multiplied by k there, so that their
  sum over k updates equals the sum of the penalties taken at every update when they change slowly. StyleGAN2
  also rescales Adam's learning rate and betas by ``k / (k + 1)`` because it runs the penalty as a separate
  optimiser step; here it is added to the loss of the update it falls on, so the optimiser is not changed.

Gradients are exact per sample (``vmap(grad)``, :func:`per_sample_squared_gradient_norms`), never the gradient of
the batch sum.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gendl_jax.objectives.distributed import global_draw, mean_over_devices

Array = jax.Array

DRAGAN_KEY = 3
"""``jax.random.fold_in(update_key, DRAGAN_KEY)`` draws DRAGAN's perturbation (the latent and interpolation draws of
the update are unchanged)."""


def per_sample_squared_gradient_norms(critic: Callable[..., Array], x: Array, labels: Array | None = None) -> Array:
    """``||grad_x f(x_i)||_2^2`` for each sample: critic maps (n, *shape) -> (n,); x: (n, *shape) -> (n,).

    Each gradient is taken on its own sample with ``vmap(grad)``, the sum over all non-batch axes. ``labels`` (n,)
    are passed on as ``critic(x, labels=...)``, each sample's with it. The squared norm has a finite derivative at a
    zero gradient (the norm's square root does not)."""
    if labels is None:
        grads = jax.vmap(jax.grad(lambda xi: critic(xi[None])[0]))(x)
    else:
        grads = jax.vmap(jax.grad(lambda xi, yi: critic(xi[None], labels=yi[None])[0]))(x, labels)
    return jnp.sum(jnp.square(grads).reshape(x.shape[0], -1), axis=1)


def r1_penalty(critic: Callable[..., Array], real: Array, fake: Array, eps: Array, labels: Array | None = None):
    """``(1/2) mean_i ||grad D(x_i)||^2`` at the real samples (times ``r1_weight`` = gamma in the loss)."""
    del fake, eps
    value = 0.5 * jnp.mean(per_sample_squared_gradient_norms(critic, real, labels))
    return value, {"r1": value}


def r2_penalty(critic: Callable[..., Array], real: Array, fake: Array, eps: Array, labels: Array | None = None):
    """``(1/2) mean_i ||grad D(G(z_i))||^2`` at the fakes (times ``r2_weight`` = gamma in the loss)."""
    del real, eps
    value = 0.5 * jnp.mean(per_sample_squared_gradient_norms(critic, fake, labels))
    return value, {"r2": value}


def dragan_draws(key: Array, real: Array, axis_name: str | None = None) -> tuple[Array, Array]:
    """DRAGAN's random draws for the real minibatch (m, *shape): ``u`` (m, *shape) and ``alpha`` (m,), both U(0, 1),
    drawn for the global batch under ``axis_name``."""
    u_key, a_key = jax.random.split(key)
    u = global_draw(jax.random.uniform, u_key, real.shape, axis_name)
    alpha = global_draw(jax.random.uniform, a_key, real.shape[:1], axis_name)
    return u, alpha


def dragan_points(real: Array, u: Array, alpha: Array, axis_name: str | None = None) -> Array:
    """``x + alpha_i * 0.5 * std(x) * u``: real (m, *shape), u (m, *shape), alpha (m,) -> (m, *shape).

    ``std`` is the population standard deviation of all the elements of the minibatch (the global batch under
    ``axis_name``, where every device holds as many rows); it is a constant of the penalty (no gradient)."""
    moments = mean_over_devices(jnp.stack([jnp.mean(real), jnp.mean(jnp.square(real))]), axis_name)
    std = jax.lax.stop_gradient(jnp.sqrt(jnp.maximum(moments[1] - jnp.square(moments[0]), 0.0)))
    return real + alpha.reshape((-1,) + (1,) * (real.ndim - 1)) * 0.5 * std * u


def dragan_penalty(key: Array, axis_name: str | None = None) -> Callable:
    """The DRAGAN penalty of one update, drawing its perturbation from ``key``: a function with the hook's
    signature returning ``mean_i (||grad D(x_hat_i)|| - 1)^2`` (times ``dragan_weight`` = lambda in the loss)."""

    def penalty(critic, real, fake, eps, labels=None):
        del fake, eps
        x_hat = dragan_points(real, *dragan_draws(key, real, axis_name), axis_name)
        norms = jnp.sqrt(per_sample_squared_gradient_norms(critic, x_hat, labels))
        value = jnp.mean(jnp.square(norms - 1.0))
        return value, {"dragan": value, "grad_norm_dragan": jnp.mean(norms)}

    return penalty


def configured(config, key: Array, axis_name: str | None = None) -> list[tuple[Callable, float]]:
    """``[(penalty, weight), ...]`` for the penalties with a positive weight in ``config`` (a ``NetworkConfig``):
    R1, R2, DRAGAN, in this order; ``key`` is the discriminator update's key (DRAGAN draws from
    ``fold_in(key, DRAGAN_KEY)``)."""
    out = []
    if config.r1_weight > 0:
        out.append((r1_penalty, config.r1_weight))
    if config.r2_weight > 0:
        out.append((r2_penalty, config.r2_weight))
    if config.dragan_weight > 0:
        out.append((dragan_penalty(jax.random.fold_in(key, DRAGAN_KEY), axis_name), config.dragan_weight))
    return out


def weighted_sum(
    terms: list[tuple[Callable, Array | float]], critic: Callable, real: Array, fake: Array, eps: Array, **labels
) -> tuple[Array, dict]:
    """``sum_j weight_j * penalty_j(critic, real, fake, eps, **labels)`` and the penalties' metrics merged."""
    total, metrics = jnp.zeros((), jnp.float32), {}
    for fn, weight in terms:
        value, m = fn(critic, real, fake, eps, **labels)
        total = total + weight * value
        metrics.update(m)
    return total, metrics


def lazy(every: int, update: Array, fn: Callable[[], tuple[Array, dict]]) -> tuple[Array, dict]:
    """Lazy regularisation: ``fn()``'s value times ``every`` on updates with ``update % every == 0``, else 0 (with
    ``lax.cond``, so the skipped updates do not compute it and the step stays one compiled function).

    ``fn() -> (value, metrics)``; on skipped updates the metrics are zeros of the same shapes; ``every == 1``
    calls ``fn`` directly."""
    if every == 1:
        return fn()

    def active():
        value, metrics = fn()
        return every * value, metrics

    def skipped():
        shapes = jax.eval_shape(fn)
        return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    return jax.lax.cond(jnp.asarray(update) % every == 0, active, skipped)
